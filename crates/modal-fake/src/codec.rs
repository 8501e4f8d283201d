//! A tonic codec that passes message bytes through untouched, so the recorder and the
//! replayer can serve every method without a generated type per method.

use bytes::{Buf as _, BufMut as _, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Largest message accepted or sent: Modal's clients allow 100 MiB.
pub const MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

/// Encodes and decodes raw message bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let length = src.remaining();
        Ok(Some(src.copy_to_bytes(length)))
    }
}

/// Answers any gRPC method with raw message bytes, for the recorder and the replayer.
pub(crate) trait RawHandler: Send + Sync + 'static {
    /// Handles one call to `path` (`/package.Service/Method`).
    fn handle(
        self: std::sync::Arc<Self>,
        path: String,
        request: tonic::Request<tonic::Streaming<Bytes>>,
    ) -> futures::future::BoxFuture<
        'static,
        Result<tonic::Response<tonic::codegen::BoxStream<Bytes>>, Status>,
    >;
}

/// A tower service serving every path with a [`RawHandler`].
pub(crate) struct AnyMethod<H>(pub std::sync::Arc<H>);

impl<H> Clone for AnyMethod<H> {
    fn clone(&self) -> Self {
        Self(std::sync::Arc::clone(&self.0))
    }
}

impl<H: RawHandler> tower::Service<http::Request<tonic::body::Body>> for AnyMethod<H> {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        futures::future::BoxFuture<'static, Result<Self::Response, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let handler = std::sync::Arc::clone(&self.0);
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), Some(MAX_MESSAGE_BYTES));
            Ok(grpc.streaming(Call { handler, path }, request).await)
        })
    }
}

struct Call<H> {
    handler: std::sync::Arc<H>,
    path: String,
}

impl<H: RawHandler> tonic::server::StreamingService<Bytes> for Call<H> {
    type Response = Bytes;
    type ResponseStream = tonic::codegen::BoxStream<Bytes>;
    type Future =
        futures::future::BoxFuture<'static, Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Bytes>>) -> Self::Future {
        std::sync::Arc::clone(&self.handler).handle(self.path.clone(), request)
    }
}
