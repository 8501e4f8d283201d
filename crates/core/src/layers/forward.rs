//! [`layer_impl!`](crate::layer_impl): the one way a layer implements
//! [`SandboxProvider`](crate::SandboxProvider) without copying every method by hand.

/// Implements [`SandboxProvider`](crate::SandboxProvider) for a layer: the methods written
/// in the block are the layer's own, and every method named in `forward [...]` goes
/// unchanged to the inner provider in the field named before it.
///
/// The impl carries `#[deny(clippy::missing_trait_methods)]`, so a trait method that is
/// neither written nor forwarded fails the lint: a new optional trait method cannot fall
/// back to its default (`Unsupported`) through a layer unnoticed. Forwarding `wrapped`
/// reports the inner provider, so [`layers::bare`](crate::layers::bare) can peel the
/// layer; a layer that changes what the provider is (such as
/// [`CapabilityOverride`](crate::layers::CapabilityOverride)) writes `wrapped` itself.
///
/// ```
/// use std::sync::Arc;
/// use sandkit_core::{Result, SandboxInfo, SandboxProvider, SandboxSpec};
///
/// /// Counts creates; everything else passes through.
/// struct Counting {
///     inner: Arc<dyn SandboxProvider>,
///     creates: std::sync::atomic::AtomicU64,
/// }
///
/// sandkit_core::layer_impl! {
///     Counting => inner forward [
///         name, capabilities, wrapped, check_provider_options, info, list, exec,
///         read_file, write_file, stat, list_dir, make_dir, remove, terminate,
///         read_file_stream, write_file_stream, download_archive_stream,
///         upload_archive_stream, upload_archive, download_archive, snapshot,
///         delete_snapshot, pause, resume, tunnels, capacity, find_by_name, resource_usage, watch,
///         entrypoint_output, write_entrypoint_stdin,
///         start_detached, commands, attach,
///     ] {
///         async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
///             self.creates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///             self.inner.create(spec).await
///         }
///     }
/// }
/// ```
#[macro_export]
macro_rules! layer_impl {
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], []) => {
        #[$crate::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::SandboxProvider for $ty {
            $($done)*
        }
    };
    // One arm per trait method: each appends that method's forwarding to the impl. (The
    // impl is emitted whole at the end, because `async_trait` must see every method.)
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [name $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        fn name(&self) -> &str { self.$inner.name() }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [capabilities $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        fn capabilities(&self) -> &$crate::Capabilities { self.$inner.capabilities() }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [wrapped $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        fn wrapped(&self) -> ::std::option::Option<&::std::sync::Arc<dyn $crate::SandboxProvider>> {
            ::std::option::Option::Some(&self.$inner)
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [check_provider_options $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        fn check_provider_options(
            &self,
            options: &::std::collections::BTreeMap<::std::string::String, $crate::__serde_json::Value>,
        ) -> $crate::Result<()> {
            self.$inner.check_provider_options(options)
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [create $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn create(&self, spec: &$crate::SandboxSpec) -> $crate::Result<$crate::SandboxInfo> {
            self.$inner.create(spec).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [info $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn info(&self, id: &$crate::SandboxId) -> $crate::Result<$crate::SandboxInfo> {
            self.$inner.info(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [list $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn list(&self, filter: &$crate::ListFilter) -> $crate::Result<::std::vec::Vec<$crate::SandboxInfo>> {
            self.$inner.list(filter).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [exec $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn exec(&self, id: &$crate::SandboxId, request: $crate::ExecRequest) -> $crate::Result<$crate::ExecProcess> {
            self.$inner.exec(id, request).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [read_file $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn read_file(&self, id: &$crate::SandboxId, path: &str) -> $crate::Result<$crate::__bytes::Bytes> {
            self.$inner.read_file(id, path).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [write_file $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn write_file(&self, id: &$crate::SandboxId, path: &str, contents: $crate::__bytes::Bytes) -> $crate::Result<()> {
            self.$inner.write_file(id, path, contents).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [stat $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn stat(&self, id: &$crate::SandboxId, path: &str) -> $crate::Result<$crate::FileStat> {
            self.$inner.stat(id, path).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [list_dir $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn list_dir(&self, id: &$crate::SandboxId, path: &str) -> $crate::Result<::std::vec::Vec<$crate::DirEntry>> {
            self.$inner.list_dir(id, path).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [make_dir $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn make_dir(&self, id: &$crate::SandboxId, path: &str) -> $crate::Result<()> {
            self.$inner.make_dir(id, path).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [remove $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn remove(&self, id: &$crate::SandboxId, path: &str, recursive: bool) -> $crate::Result<()> {
            self.$inner.remove(id, path, recursive).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [terminate $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn terminate(&self, id: &$crate::SandboxId) -> $crate::Result<()> {
            self.$inner.terminate(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [read_file_stream $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn read_file_stream(&self, id: &$crate::SandboxId, path: &str) -> $crate::Result<$crate::ByteStream> {
            self.$inner.read_file_stream(id, path).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [write_file_stream $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn write_file_stream(&self, id: &$crate::SandboxId, path: &str, contents: $crate::ByteStream) -> $crate::Result<()> {
            self.$inner.write_file_stream(id, path, contents).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [download_archive_stream $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn download_archive_stream(&self, id: &$crate::SandboxId, path: &str) -> $crate::Result<$crate::ByteStream> {
            self.$inner.download_archive_stream(id, path).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [upload_archive_stream $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn upload_archive_stream(&self, id: &$crate::SandboxId, path: &str, tar: $crate::ByteStream) -> $crate::Result<()> {
            self.$inner.upload_archive_stream(id, path, tar).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [upload_archive $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn upload_archive(&self, id: &$crate::SandboxId, path: &str, tar: $crate::__bytes::Bytes) -> $crate::Result<()> {
            self.$inner.upload_archive(id, path, tar).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [download_archive $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn download_archive(&self, id: &$crate::SandboxId, path: &str) -> $crate::Result<$crate::__bytes::Bytes> {
            self.$inner.download_archive(id, path).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [snapshot $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn snapshot(&self, id: &$crate::SandboxId) -> $crate::Result<$crate::Snapshot> {
            self.$inner.snapshot(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [delete_snapshot $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn delete_snapshot(&self, snapshot_id: &str) -> $crate::Result<()> {
            self.$inner.delete_snapshot(snapshot_id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [pause $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn pause(&self, id: &$crate::SandboxId) -> $crate::Result<()> {
            self.$inner.pause(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [resume $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn resume(&self, id: &$crate::SandboxId) -> $crate::Result<()> {
            self.$inner.resume(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [tunnels $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn tunnels(&self, id: &$crate::SandboxId) -> $crate::Result<::std::vec::Vec<$crate::Tunnel>> {
            self.$inner.tunnels(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [capacity $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn capacity(&self) -> $crate::Result<$crate::Capacity> {
            self.$inner.capacity().await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [watch $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn watch(&self, id: &$crate::SandboxId, path: &str, recursive: bool) -> $crate::Result<$crate::FileEvents> {
            self.$inner.watch(id, path, recursive).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [start_detached $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn start_detached(&self, id: &$crate::SandboxId, request: $crate::ExecRequest) -> $crate::Result<$crate::CommandInfo> {
            self.$inner.start_detached(id, request).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [commands $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn commands(&self, id: &$crate::SandboxId) -> $crate::Result<Vec<$crate::CommandInfo>> {
            self.$inner.commands(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [attach $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn attach(&self, id: &$crate::SandboxId, command: &str, from: $crate::AttachFrom) -> $crate::Result<$crate::ExecProcess> {
            self.$inner.attach(id, command, from).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [resource_usage $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn resource_usage(&self, id: &$crate::SandboxId) -> $crate::Result<$crate::ResourceUsage> {
            self.$inner.resource_usage(id).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [entrypoint_output $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn entrypoint_output(&self, id: &$crate::SandboxId, stream: $crate::OutputStream, offset: u64) -> $crate::Result<$crate::ByteStream> {
            self.$inner.entrypoint_output(id, stream, offset).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [write_entrypoint_stdin $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn write_entrypoint_stdin(&self, id: &$crate::SandboxId, offset: u64, data: $crate::__bytes::Bytes, eof: bool) -> $crate::Result<()> {
            self.$inner.write_entrypoint_stdin(id, offset, data, eof).await
        }
        ], [$($rest)*]);
    };
    (@munch $ty:ty, $inner:ident, [$($done:tt)*], [find_by_name $($rest:ident)*]) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($done)*
        async fn find_by_name(&self, name: &str) -> $crate::Result<$crate::SandboxInfo> {
            self.$inner.find_by_name(name).await
        }
        ], [$($rest)*]);
    };
    // The entry point, last so the internal arms above are tried first.
    ($ty:ty => $inner:ident forward [$($method:ident),* $(,)?] { $($own:tt)* }) => {
        $crate::layer_impl!(@munch $ty, $inner, [$($own)*], [$($method)*]);
    };
}
