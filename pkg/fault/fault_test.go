package fault_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cohuron/deploy/pkg/fault"
)

type selfKinded struct{}

func (selfKinded) Error() string         { return "self" }
func (selfKinded) FaultKind() fault.Kind { return fault.KindRejected }

func TestExitCodes(t *testing.T) {
	base := errors.New("boom")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{base, 1},
		{fault.Usage(base), 2},
		{fmt.Errorf("loading: %w", fault.Rejected(base)), 3},
		{fmt.Errorf("wrapped: %w", selfKinded{}), 3},
		{fault.Transient(base), 1},
		{fault.ConvergeFailed(base), 4},
		{fault.RollbackFailed(fault.Rejected(base)), 5}, // the outermost kind wins
	} {
		if got := fault.ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if fault.Usage(nil) != nil {
		t.Error("Usage(nil) must stay nil")
	}
	if !errors.Is(fault.Rejected(base), base) {
		t.Error("classification must keep the chain")
	}
}

func TestScrub(t *testing.T) {
	for in, want := range map[string]string{
		"GET https://user:hunter2@host/x failed":                        "GET https://REDACTED@host/x failed",
		"https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&x=1":          "https://b.s3.amazonaws.com/k?X-Amz-Signature=REDACTED&x=1",
		"s3://bucket/prefix":                                            "s3://bucket/prefix",
		"x?X-Amz-Credential=AKIA/2026/us-east-1&X-Amz-Security-Token=t": "x?X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED",
	} {
		if got := fault.Scrub(in); got != want {
			t.Errorf("Scrub(%q) = %q, want %q", in, got, want)
		}
	}
}
