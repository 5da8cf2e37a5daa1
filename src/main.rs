//! The imgbuild binary: parse arguments, run, map the result to an exit status.

fn main() {
    let exit = imgbuild::run(std::env::args().collect());
    std::process::exit(exit.code());
}
