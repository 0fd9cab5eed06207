// Package retrystore wraps a store.Store so that transient failures
// (network errors, throttling, 5xx answers, per-request timeouts) are
// retried with capped exponential backoff and full jitter.
//
// It never retries a permanent answer: a missing object (ErrNotFound), a
// lost PutIfAbsent race (ErrExists), ErrNotModified, ErrTooLarge, errors
// whose fault kind is rejected or usage, an invalid key (refused before
// the inner store is called), or the caller's own context ending. It never
// retries a Put whose body cannot be rewound, nor reads of a Get body:
// only opening the object is retried.
//
// Retries are logged, and the log must never carry credentials: error
// strings from the inner store are already scrubbed (stores name
// themselves by String, which holds no secrets), and the wrapper passes
// them through fault.Scrub once more before logging.
package retrystore
