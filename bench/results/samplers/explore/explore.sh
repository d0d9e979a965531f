#!/bin/bash
cd "$(dirname "$0")/../../../.."  # the repository root
B=build/apps/vae-ebm  # run from a copy of this build, so that rebuilding did not disturb it
ev() { # name, flags
  local name=$1; shift
  mkdir -p runs/s28/explore/$name
  $B evaluate runs/s28/joint --out runs/s28/explore/$name --limit 100 --samples 2 --log-z-method is --log-z-samples 1000 --threads 1 "$@" > runs/s28/explore/$name/evaluate.txt 2>&1
}
ev sir50 --sampler flow-sir --sir-candidates 50
ev hmc40 --sampler hmc --hmc-trajectories 40
ev mala03 --sampler mala --sampler-step-size 0.3
ev flowmala02 --sampler flow-mala --sampler-flow-step-size 0.2 --sampler-flow-steps 50
ev transport05 --sampler transport --sampler-flow-step-size 0.5 --sampler-flow-steps 50
ev hmc-l20 --sampler hmc --hmc-leapfrog 20 --hmc-trajectories 20
echo EXPLORE DONE
