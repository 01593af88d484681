//! Compiles proto/cinema/v1/*.proto with protox (no system protoc needed).

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let dir = root.join("cinema/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("proto/cinema/v1 is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!("cargo:rerun-if-changed={}", dir.display());
    let fds = protox::compile(&files, [&root]).expect("proto files compile");
    prost_build::Config::new()
        .enable_type_names()
        .type_name_domain(["."], "type.cinema.dev")
        .compile_fds(fds)
        .expect("prost generates code");
}
