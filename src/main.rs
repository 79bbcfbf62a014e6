fn main() {
    std::process::exit(sparseqc::cli::main());
}
