// vae-ebm: dispatch to the subcommand (the table in apps/commands.cpp).
#include "apps/cli.h"

int main(int argc, char** argv) { return vae_ebm::cli::main_entry(argc, argv); }
