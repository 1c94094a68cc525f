// Package wire is the PostgreSQL protocol layer of the tdb proxy. It knows
// nothing of the metadata store.
//
// A client connection goes through three phases, each its own function:
//
//   - Startup: SSLRequest (TLS with a certificate from LoadOrCreateCert or
//     LoadCert) or a direct TLS handshake (sslnegotiation=direct: the first
//     byte is a TLS record's, and ALPN "postgresql" is required),
//     GSSENCRequest (declined), CancelRequest, StartupMessage.
//   - AuthenticateSCRAM: SCRAM-SHA-256(-PLUS) against candidate verifiers
//     (package wire/scram), with tls-server-end-point channel binding.
//   - Relay: FrameReader and FrameWriter move raw messages with one reused
//     buffer and coalesced writes; QueryText, ParseErrorFields and friends
//     decode only what the proxy inspects, and AppendErrorResponse and
//     friends build what it says itself.
//
// Every error meant for a client is a *PGError carrying a SQLSTATE, made with
// Errorf or Fatalf where the error happens and read once at the edge with
// CodeOf or ToErrorResponse.
package wire
