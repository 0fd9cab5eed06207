// Package faultproxy is a test-only, fault-injecting HTTP reverse proxy
// that sits on loopback in front of the store (MinIO/S3) so end-to-end
// tests can prove a client survives store faults. Per request it can
// answer with an S3-style error status, hang, reset or truncate the
// response after some body bytes, drip the body slowly, or refuse by
// closing the connection; otherwise it streams requests and responses
// through unchanged. It forwards the client's Host header as sent, because
// S3 SigV4 signs the host the client talked to (the proxy), not MinIO's.
package faultproxy
