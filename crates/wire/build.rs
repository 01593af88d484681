//! Compiles proto/cinema/v1/*.proto with protox (no system protoc needed).
//!
//! `rerun-if-changed` paths are relative to this package: cargo shares this
//! build script's unit between clones that use one target dir, and relative
//! paths make each build watch its own clone's files.

use std::path::{Path, PathBuf};

const PROTO_ROOT: &str = "../../proto";
const PROTO_DIR: &str = "../../proto/cinema/v1";

fn main() {
    // At run time, not `env!`: the compiled build script is shared between
    // clones, and must read the proto files of the clone being built.
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let mut names: Vec<String> = std::fs::read_dir(manifest.join(PROTO_DIR))
        .expect("proto/cinema/v1 is readable")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".proto"))
        .collect();
    names.sort();
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    for n in &names {
        println!("cargo:rerun-if-changed={PROTO_DIR}/{n}");
    }
    let files: Vec<PathBuf> = names
        .iter()
        .map(|n| manifest.join(PROTO_DIR).join(n))
        .collect();
    let fds = protox::compile(&files, [manifest.join(Path::new(PROTO_ROOT))])
        .expect("proto files compile");
    // The descriptors themselves, for tools that decode any message by its
    // type name (`cinema tap`).
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("file_descriptor_set.bin"),
        prost::Message::encode_to_vec(&fds),
    )
    .expect("OUT_DIR is writable");
    prost_build::Config::new()
        .enable_type_names()
        .type_name_domain(["."], "type.cinema.dev")
        .compile_fds(fds)
        .expect("prost generates code");
}
