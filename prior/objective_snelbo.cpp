// "snelbo": the self-normalised bound of MATH.md section 2,
//   E_q[log p0(z)] - E_q[f(z)] - b - exp(-b) Zhat + 1,
// with a fresh importance-sampling estimate Zhat from S proposal samples every step. With
// --proposal flow the proposal is a normalising flow (prior/flow.h) trained alongside, mixed
// with the base (docs/MATH.md section 8.4).
#include <torch/torch.h>

#include "prior/energy.h"
#include "prior/flow.h"
#include "prior/objective.h"

#include <cmath>
#include <stdexcept>

#include "common/error.h"

namespace vae_ebm {

namespace {

// SNELBO's options (declared as flags by snelbo_options below); validated where the objective is
// built, an error naming the option.
struct SnelboOptions {
  // Samples S for the estimate of Z each step (0: the batch size).
  TORCH_ARG(int64_t, base_samples) = 0;
  // Proposal r for Z: base | aggregate-gaussian | batch-posterior | defensive | flow.
  TORCH_ARG(std::string, proposal) = "base";
  // flow: how the flow proposal trains: ml (maximum likelihood on the batch's posterior
  // samples: the aggregate posterior), reverse-kl (towards the current energy prior), or mix
  // (the sum of the two losses).
  TORCH_ARG(std::string, flow_fit) = "mix";
  TORCH_ARG(double, flow_base_fraction) = 0.1;  // flow: share of the S samples from the base
  // flow: Adam steps of the flow's fit per training step (more keep it closer to the energy).
  TORCH_ARG(int64_t, flow_steps) = 1;
  // flow: temperatures T of an annealed path from the proposal r to the prior, one MALA step
  // of anneal_step at each of the T - 1 intermediate ones (AIS weights, docs/MATH.md 8.4);
  // 1: plain importance sampling from r.
  TORCH_ARG(int64_t, anneal) = 1;
  TORCH_ARG(double, anneal_step) = 0.1;
  // Energy magnitude penalty alpha * (mean f(z_post)^2 + mean f(z_proposal)^2), as the MCMC
  // objectives' (issue 28: against energy mass far from what the proposals reach; 0: off). It
  // shapes training only: the bounds evaluate does not include it. Shared: energy_l2_option().
  TORCH_ARG(double, energy_l2) = 0.0;

 public:
  void validate() const;  // throws OptionError
};

const OptionSet<SnelboOptions>& snelbo_options() {
  using O = SnelboOptions;
  static const auto set =
      OptionSet<O>()
          .integer("base-samples", [](O& o) -> int64_t& { return o.base_samples(); },
                   "samples S for Zhat each step (0: the batch size)")
          .text("proposal", [](O& o) -> std::string& { return o.proposal(); },
                "proposal for Zhat: base, aggregate-gaussian, batch-posterior, defensive, flow")
          .text("flow-fit", [](O& o) -> std::string& { return o.flow_fit(); },
                "proposal flow: how the flow trains, by Adam steps each training step: ml (the batch's "
                "posterior samples), reverse-kl (the energy prior) or mix (both)")
          .real("proposal-base-fraction", [](O& o) -> double& { return o.flow_base_fraction(); },
                "proposal flow: share of the S samples drawn from the base (bounds the weights)")
          .integer("proposal-flow-steps", [](O& o) -> int64_t& { return o.flow_steps(); },
                   "proposal flow: Adam steps of the flow's fit per training step")
          .integer("proposal-anneal", [](O& o) -> int64_t& { return o.anneal(); },
                   "proposal flow: temperatures T of an annealed path from the proposal to the prior, with one "
                   "MALA step at each intermediate one and AIS weights (1: plain importance sampling)")
          .real("proposal-anneal-step", [](O& o) -> double& { return o.anneal_step(); },
                "proposal flow: the MALA step size on the annealed path");
  return set;
}

class SnelboObjective : public PriorObjective {
 public:
  SnelboObjective(const SnelboOptions& options, double flow_lr) : options_(options), flow_(flow_lr) { options.validate(); }
  std::string name() const override { return "snelbo"; }
  bool trains_b_in_its_bound() const override { return true; }
  bool per_sample_terms() const override { return true; }
  void set_per_sample_terms(bool on) override { want_samples_ = on; }
  bool supports(const Prior& prior) const override { return is_energy_prior(prior); }
  std::string requirement() const override { return kEnergyPriorRequirement; }

  PriorTerm prior_term(Prior& prior, const DiagonalGaussian& q, const torch::Tensor& z,
                       at::Generator& generator) override {
    auto& ebm = as_energy_prior(prior);
    if (dist_ && dist_->parallel()) return data_parallel_term(ebm, q, z, generator);
    const int64_t s = options_.base_samples() > 0 ? options_.base_samples() : q.batch();
    auto proposal = proposal_samples(q, s, generator);
    // The T states of each proposal chain (T = 1: the proposal samples themselves).
    auto path = options_.anneal() > 1 ? annealed_path(ebm, proposal, generator)
                                      : AnnealedPath{{proposal.z}, {proposal.log_correction}};
    const auto states = static_cast<int64_t>(path.z.size());
    // f at the K x B posterior samples and the T x S proposal states in one pass: more rows per
    // matrix product, fewer products (these 200-wide products are too small to split well over
    // two BLAS threads).
    const int64_t d = q.dim(), kb = z.numel() / d;
    std::vector<torch::Tensor> rows{z.reshape({kb, d})};
    rows.insert(rows.end(), path.z.begin(), path.z.end());
    auto f = ebm.energy(torch::cat(rows));
    // AIS: log w = (1/T) sum_t [-f + log p0 - log r](z_t) (plain importance sampling at T = 1).
    auto log_w = -f.narrow(0, kb, s) + path.log_correction[0];  // [S]
    for (int64_t t = 1; t < states; ++t) log_w = log_w - f.narrow(0, kb + t * s, s) + path.log_correction[t];
    if (states > 1) log_w = log_w / static_cast<double>(states);
    auto log_z_hat = log_mean_exp(log_w);
    // E_q[log p0] in closed form; the energy by Monte Carlo over the K samples.
    auto cross_entropy = q.expected_standard_normal_log_prob();
    auto f_posterior = f.narrow(0, 0, kb).reshape(z.sizes().slice(0, z.dim() - 1));
    auto shared = snl_terms(ebm.b, log_z_hat);  // the same for every sample and image
    if (options_.energy_l2() > 0)
      shared = shared - options_.energy_l2() * (f.narrow(0, 0, kb).pow(2).mean() + f.narrow(0, kb, s * states).pow(2).mean());
    PriorTerm term{cross_entropy - f_posterior.mean(0) + shared, {}};
    if (want_samples_) term.log_prior_samples = standard_normal_log_prob(z) - f_posterior + shared;
    auto w = torch::softmax(log_w.detach().to(torch::kDouble), 0);
    term.diagnostics["log_z_hat"] = log_z_hat.item<double>();
    term.diagnostics["b"] = ebm.b.item<double>();
    term.diagnostics["ess_fraction"] = (1.0 / (w * w).sum()).item<double>() / static_cast<double>(s);
    if (states > 1) term.diagnostics["anneal_acceptance"] = path.acceptance;
    if (options_.proposal() == "flow")
      for (int64_t k = 0; k < options_.flow_steps(); ++k) term.diagnostics["flow_loss"] = fit_flow_step(ebm, z, s, generator);
    return term;
  }

  void check_data_parallel(int world_size) const override {
    if (world_size > 1 && (options_.energy_l2() > 0 || options_.flow_steps() != 1 || options_.anneal() != 1))
      throw OptionError(options_.energy_l2() > 0 ? "energy-l2"
                        : options_.anneal() != 1 ? "proposal-anneal"
                                                 : "proposal-flow-steps",
                        "is not data-parallel yet with snelbo");
    if (options_.base_samples() > 0 && options_.base_samples() < world_size)
      throw OptionError("base-samples", "must be at least the number of processes (" + std::to_string(world_size) +
                                            "), got " + std::to_string(options_.base_samples()));
  }
  void set_data_parallel(std::shared_ptr<Distributed> dist, const BatchShard& shard, uint64_t, torch::Device) override {
    dist_ = std::move(dist);
    shard_ = shard;
  }

  void save(torch::serialize::OutputArchive& archive) const override { flow_.save(archive); }
  void load(torch::serialize::InputArchive& archive) override {
    if (options_.proposal() == "flow") flow_.load(archive);
  }

 private:
  // S samples z' ~ r [S, D] and log [p0(z') / r(z')] [S] (0 for the base): the importance
  // weight of z' is exp(-f(z')) times exp(log_correction).
  struct Proposal {
    torch::Tensor z, log_correction;
    double base_share = 0;  // flow: the mixture's share a of base samples
  };
  // With a share (data-parallel training), its rows of the S samples: all of their noise drawn,
  // as one process draws it, and this process's rows kept.
  Proposal proposal_samples(const DiagonalGaussian& q, int64_t s, at::Generator& generator,
                            const BatchShard* share = nullptr) {
    const int64_t d = q.dim();
    auto opts = q.mu.options();
    const auto& p = options_.proposal();
    if (p == "base") {
      auto zs = torch::randn({s, d}, generator, opts);
      if (share) zs = share->rows(zs, 0);
      return {zs, torch::zeros({zs.size(0)}, opts)};
    }
    if (p == "flow") {
      auto& flow = flow_.get(d, q.mu.device(), generator);
      // round(a S) samples from the base, the rest from the flow, weighted by their mixture.
      const int64_t from_base = std::llround(options_.flow_base_fraction() * static_cast<double>(s));
      const double a = static_cast<double>(from_base) / static_cast<double>(s);
      auto mixture = sample_flow_mixture(flow, from_base, s - from_base, a, generator, share);
      return {mixture.z, mixture.log_correction, a};
    }
    if (share) {
      // Fitted to the whole batch's posterior: all S drawn from it, as one process draws them,
      // and this process's rows kept.
      auto all = proposal_samples(whole_batch_posterior(q, *dist_, shard_), s, generator);
      return {share->rows(all.z, 0), share->rows(all.log_correction, 0)};
    }
    if (p == "aggregate-gaussian") {
      auto r = q.aggregate_moment_match();
      auto zs = r.rsample(s, generator).squeeze(1);  // [S, D]
      return {zs, standard_normal_log_prob(zs) - r.log_prob(zs)};
    }
    if (p == "defensive") {
      // Half the samples from the base, half from the moment-matched Gaussian, weighted by
      // the mixture of the two with those fractions (a deterministic mixture: unbiased).
      // The base half keeps the weights below 1 / fraction times exp(-f) everywhere, so an
      // energy cannot hide mass where the Gaussian never looks; the Gaussian half finds the
      // mass near the posterior that base samples miss.
      auto r = q.aggregate_moment_match();
      const int64_t from_base = s / 2, from_r = s - from_base;
      auto zs = torch::cat({torch::randn({from_base, d}, generator, opts), r.rsample(from_r, generator).squeeze(1)});
      const double log_fb = std::log(static_cast<double>(from_base) / static_cast<double>(s));
      const double log_fr = std::log(static_cast<double>(from_r) / static_cast<double>(s));
      auto log_p0 = standard_normal_log_prob(zs);
      auto log_mix = torch::logaddexp(log_p0 + log_fb, r.log_prob(zs) + log_fr);
      return {zs, log_p0 - log_mix};
    }
    // batch-posterior: uniform mixture of the batch's q(z|x_i).
    auto mu = q.mu.detach();
    auto var = torch::exp(q.logvar.detach());
    auto index = torch::randint(q.batch(), {s}, generator, torch::TensorOptions().dtype(torch::kLong).device(opts.device()));
    auto zs = mu.index_select(0, index) + torch::sqrt(var.index_select(0, index)) * torch::randn({s, d}, generator, opts);
    DiagonalGaussian components{mu, q.logvar.detach()};
    auto log_q = components.log_prob(zs.unsqueeze(1));  // [S, B]
    auto log_r = torch::logsumexp(log_q, 1) - std::log(static_cast<double>(q.batch()));
    return {zs, standard_normal_log_prob(zs) - log_r};
  }

  // Annealed importance sampling from the defensive flow mixture r to the prior p ~ p0 exp(-f)
  // along pi_t ~ r^(1 - beta_t) (p0 exp(-f))^beta_t, beta_t = t / T (docs/MATH.md 8.4): the
  // chains start at the proposal samples z_0 ~ r and z_t is one MALA step on pi_t from z_{t-1}
  // for t = 1..T-1. Returns every z_t (detached) and log [p0 / r](z_t) (no gradient), so that
  // log w = (1/T) sum_t [-f(z_t) + log p0 / r(z_t)] is an AIS weight: E[w] = Z for any f.
  // The energy's gradient reaches log w through f(z_t) only (the chains' dependence on f is
  // not followed, as for Langevin negatives).
  struct AnnealedPath {
    std::vector<torch::Tensor> z, log_correction;
    double acceptance = 1.0;
  };
  AnnealedPath annealed_path(EnergyPrior& ebm, const Proposal& proposal, at::Generator& generator) {
    auto& flow = flow_.get(proposal.z.size(1), proposal.z.device(), generator);
    const double a = proposal.base_share;
    auto log_correction = [&flow, a](const torch::Tensor& x) {  // log p0(x) - log r(x)
      return flow_mixture_log_correction(x, flow->log_prob(x), a);
    };
    AnnealedPath path{{proposal.z}, {proposal.log_correction}};
    const int64_t temperatures = options_.anneal();
    double accepted = 0;
    for (int64_t t = 1; t < temperatures; ++t) {
      const double beta = static_cast<double>(t) / static_cast<double>(temperatures);
      // U_t = |z|^2 / 2 + beta f + (1 - beta) log [p0 / r]: -log pi_t up to a constant.
      auto potential = [&](const torch::Tensor& x) {
        return 0.5 * (x * x).sum(-1) + beta * ebm.energy(x) + (1 - beta) * log_correction(x);
      };
      const auto mala = LangevinOptions().steps(1).step_size(options_.anneal_step()).metropolis(true);
      auto step = langevin(potential, path.z.back(), mala, generator);
      accepted += step.acceptance_rate;
      path.z.push_back(step.z);
      torch::NoGradGuard no_grad;
      path.log_correction.push_back(log_correction(step.z));
    }
    path.acceptance = accepted / static_cast<double>(temperatures - 1);
    return path;
  }

  // One Adam step of the flow on its own loss; no gradient reaches the energy, b or the VAE.
  // ml: -mean log q_flow(z) over the batch's posterior samples (detached); reverse-kl:
  // mean over S flow samples of log q_flow(z) + f(z) - log p0(z), i.e. KL(q_flow || p) - log Z.
  // In data-parallel training (share: this process's part of the S samples) each process
  // computes its part of the loss (its posterior samples' part of the mean over K x B, its
  // flow samples' part of the mean over S) and the flow's gradients are summed over the
  // processes; the value returned is this process's part.
  double fit_flow_step(EnergyPrior& ebm, const torch::Tensor& z, int64_t s, at::Generator& generator,
                       const BatchShard* share = nullptr) {
    torch::AutoGradMode enable_grad(true);
    const auto& fit = options_.flow_fit();
    auto& flow = flow_.get(z.size(-1), z.device(), generator);
    torch::Tensor loss = torch::zeros({}, z.options().requires_grad(false));
    if (fit == "ml" || fit == "mix") {
      auto log_q = flow->log_prob(z.detach().reshape({-1, flow->dim()}));
      loss = loss - (share ? log_q.sum() / static_cast<double>(z.size(0) * shard_.global) : log_q.mean());
    }
    if (fit == "reverse-kl" || fit == "mix")
      loss = loss + reverse_kl_gap(flow, [&ebm](const torch::Tensor& x) { return ebm.energy(x); }, s, generator, share);
    flow_.step(loss, share ? dist_.get() : nullptr);
    return loss.item<double>();
  }

  // prior_term() in one of several processes (docs/MATH.md section 10). The S proposal samples
  // are drawn for the whole step, as one process draws them, and each process evaluates its share;
  // log Zhat over all S is combined by a log-sum-exp over the processes. Its value is the same
  // on every process; its gradient here is this process's samples' part of d log Zhat, times
  // global batch / this process's rows, so that the per-image mean over this process's rows
  // (weighted rows / global batch by the trainer) and the sum over processes give exactly the
  // single process's gradient.
  PriorTerm data_parallel_term(EnergyPrior& ebm, const DiagonalGaussian& q, const torch::Tensor& z,
                               at::Generator& generator) {
    const int64_t s = options_.base_samples() > 0 ? options_.base_samples() : shard_.global;
    const auto share = BatchShard::of(s, dist_->rank(), dist_->world_size());
    const int64_t d = q.dim(), kb = z.numel() / d;
    auto proposal = proposal_samples(q, s, generator, &share);
    auto f = ebm.energy(torch::cat({z.reshape({kb, d}), proposal.z}));
    auto log_w = -f.narrow(0, kb, share.size) + proposal.log_correction;  // [S_r]
    auto log_sum = torch::logsumexp(log_w, 0);   // log of this process's sum of weights
    // log sum w and log sum w^2 over all S samples, in double, the same bits on every process.
    auto all = dist_->all_reduce_logsumexp(torch::stack({log_sum.detach(), torch::logsumexp(2 * log_w.detach(), 0)}),
                                           "the log-sum-exp all-reduce of snelbo's Zhat");
    const double log_total = all[0].item<double>(), log_total_sq = all[1].item<double>();
    const double log_s = std::log(static_cast<double>(s));
    auto part = torch::exp(log_sum - log_total);  // this process's share of sum w; its gradient: its part of d log sum w
    const double scale = static_cast<double>(shard_.global) / static_cast<double>(q.batch());
    auto log_z_hat = (part - part.detach()) * scale + (log_total - log_s);
    auto cross_entropy = q.expected_standard_normal_log_prob();
    auto f_posterior = f.narrow(0, 0, kb).reshape(z.sizes().slice(0, z.dim() - 1));
    auto shared = snl_terms(ebm.b, log_z_hat);
    PriorTerm term{cross_entropy - f_posterior.mean(0) + shared, {}};
    if (want_samples_) term.log_prior_samples = standard_normal_log_prob(z) - f_posterior + shared;
    term.diagnostics["log_z_hat"] = log_total - log_s;
    term.diagnostics["b"] = ebm.b.item<double>();
    term.diagnostics["ess_fraction"] = std::exp(2 * log_total - log_total_sq) / static_cast<double>(s);
    if (options_.proposal() == "flow") term.diagnostics["flow_loss"] = fit_flow_step(ebm, z, s, generator, &share);
    return term;
  }

  SnelboOptions options_;
  bool want_samples_ = false;
  TrainedFlow flow_;
  std::shared_ptr<Distributed> dist_;
  BatchShard shard_;
};

void SnelboOptions::validate() const {
  if (base_samples_ < 0)
    throw OptionError("base-samples", "must be >= 0 (0: the batch size), got " + std::to_string(base_samples_));
  if (proposal_ != "base" && proposal_ != "aggregate-gaussian" && proposal_ != "batch-posterior" &&
      proposal_ != "defensive" && proposal_ != "flow")
    throw OptionError("proposal", "unknown proposal '" + proposal_ +
                                      "' (valid: base, aggregate-gaussian, batch-posterior, defensive, flow)");
  if (flow_fit_ != "ml" && flow_fit_ != "reverse-kl" && flow_fit_ != "mix")
    throw OptionError("flow-fit", "unknown flow fit '" + flow_fit_ + "' (valid: ml, reverse-kl, mix)");
  if (flow_steps_ < 1) throw OptionError("proposal-flow-steps", "must be >= 1, got " + std::to_string(flow_steps_));
  if (anneal_ < 1) throw OptionError("proposal-anneal", "must be >= 1, got " + std::to_string(anneal_));
  if (anneal_ > 1 && proposal_ != "flow")
    throw OptionError("proposal-anneal", "needs the flow proposal (the path starts at the flow mixture)");
  if (!(anneal_step_ > 0 && std::isfinite(anneal_step_)))
    throw OptionError("proposal-anneal-step", "must be a positive number, got " + std::to_string(anneal_step_));
  if (!(flow_base_fraction_ >= 0 && flow_base_fraction_ < 1))
    throw OptionError("proposal-base-fraction", "must be in [0, 1), got " + std::to_string(flow_base_fraction_));
}

}  // namespace

ObjectiveEntry snelbo_objective_entry() {
  auto options = snelbo_options().specs();
  options.push_back(energy_l2_option());
  options.push_back(flow_lr_option());
  return {options, [](const OptionValues& values) -> std::unique_ptr<PriorObjective> {
            auto options = snelbo_options().read(values).energy_l2(energy_l2(values));
            return std::make_unique<SnelboObjective>(options, flow_lr(values));
          }};
}

}  // namespace vae_ebm
