//! Compiles sandkit's own subset of Modal's `.proto` files with `protox` (pure Rust, so no
//! `protoc` is needed on the machine) and generates prost messages plus tonic clients and
//! servers. Servers are generated too: the provider's tests and `sandkit-modal-fake` serve
//! the same services.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/modal_proto/api.proto",
        "proto/modal_proto/task_command_router.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    // The include root is `proto/` so `task_command_router.proto` imports
    // `modal_proto/api.proto` exactly as Modal's does.
    let descriptors = protox::compile(files, ["proto"])?;
    // Also kept as bytes: tools that render messages generically (e.g. readable cassettes
    // with prost-reflect) need the descriptors.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("modal_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Servers need implement only the calls they serve; the rest answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
