package fault

import (
	"errors"
	"regexp"
)

// Exit codes of both programs. Documented in README.md; scripts rely on them.
const (
	ExitOK             = 0 // success, or converged
	ExitError          = 1 // any other error
	ExitUsage          = 2 // bad flags or arguments
	ExitRejected       = 3 // input rejected: signature, policy, replay, expiry, unsafe archive, invalid manifest
	ExitConvergeFailed = 4 // converge failed and the previous release was restored
	ExitRollbackFailed = 5 // rollback failed: a human must look now
)

// Kind is how an error must be handled.
type Kind int

// Kinds of error.
const (
	KindUnknown        Kind = iota
	KindUsage               // the caller asked for something impossible
	KindRejected            // input that must not be trusted or applied
	KindTransient           // worth retrying later
	KindConvergeFailed      // applied, failed, rolled back
	KindRollbackFailed      // rollback itself failed
)

func (k Kind) String() string {
	switch k {
	case KindUsage:
		return "usage"
	case KindRejected:
		return "rejected"
	case KindTransient:
		return "transient"
	case KindConvergeFailed:
		return "converge-failed"
	case KindRollbackFailed:
		return "rollback-failed"
	}
	return "error"
}

type kindError struct {
	kind Kind
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() error   { return e.err }
func (e *kindError) FaultKind() Kind { return e.kind }

// Kinder is implemented by error types that know their own kind, such as
// trust.VerificationError.
type Kinder interface{ FaultKind() Kind }

func wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: k, err: err}
}

// Usage marks err as a usage error.
func Usage(err error) error { return wrap(KindUsage, err) }

// Rejected marks err as rejected input.
func Rejected(err error) error { return wrap(KindRejected, err) }

// Transient marks err as worth retrying.
func Transient(err error) error { return wrap(KindTransient, err) }

// ConvergeFailed marks err as a failed converge that was rolled back.
func ConvergeFailed(err error) error { return wrap(KindConvergeFailed, err) }

// RollbackFailed marks err as a failed rollback.
func RollbackFailed(err error) error { return wrap(KindRollbackFailed, err) }

// KindOf returns the outermost classification in err's chain.
func KindOf(err error) Kind {
	var k Kinder
	if errors.As(err, &k) {
		return k.FaultKind()
	}
	return KindUnknown
}

// ExitCode maps err to the documented exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	switch KindOf(err) {
	case KindUsage:
		return ExitUsage
	case KindRejected:
		return ExitRejected
	case KindConvergeFailed:
		return ExitConvergeFailed
	case KindRollbackFailed:
		return ExitRollbackFailed
	}
	return ExitError
}

var (
	userinfoRE = regexp.MustCompile(`(://)[^/@\s:]+:[^/@\s]+@`)
	presignRE  = regexp.MustCompile(`(?i)([?&](X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId)=)[^&\s"]+`)
)

// Scrub removes credentials and presigned query strings from a message,
// for errors and logs that may quote URLs.
func Scrub(msg string) string {
	msg = userinfoRE.ReplaceAllString(msg, "${1}REDACTED@")
	return presignRE.ReplaceAllString(msg, "${1}REDACTED")
}
