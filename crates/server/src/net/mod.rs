//! The bytes on the wire, below any request: plain TCP or TLS sockets that
//! can move between runtimes (`stream`), response compression
//! (`compress`), and the open-files limit connections are counted against
//! (`files`). The edge and the WebSocket both stand on these.

pub mod compress;
pub mod files;
pub mod stream;
