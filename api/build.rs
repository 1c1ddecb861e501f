//! Generates the etcd v3 messages from the vendored protos (see proto/README.md).
//! Only messages: the gRPC service is hand-written (src/grpc.rs), because
//! tonic's generated server traits require `Send` futures.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_protos(&["proto/etcd/api/etcdserverpb/rpc.proto"], &["proto"])?;
    Ok(())
}
