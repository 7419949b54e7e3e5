//! Hostile and careless input (issue 18): every class of bad input gets a clear, enveloped
//! answer, nothing refused is stored, and the server keeps answering `/health` throughout.
//! `http` covers the HTTP edge (extractor rejections, slowloris, oversized and early-refused
//! bodies, parser differences, gzip ingress, idle connections); `ws` covers WebSocket frames,
//! replay with many globs and subscription validation.

mod http;
mod ws;
