package extract

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// endless yields bytes forever, like an entry whose header understates
// its data: only the bytes themselves can be counted.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestCopyCappedCountsRealBytes(t *testing.T) {
	buf := make([]byte, 7) // small, so the cap falls inside and across reads
	for _, max := range []int64{0, 1, 5, 7, 8, 100} {
		var w bytes.Buffer
		n, err := copyCapped(&w, endless{}, max, buf)
		if !errors.Is(err, errOverCap) || n != max || int64(w.Len()) != max {
			t.Errorf("max %d: copied %d (wrote %d), err %v; want exactly the cap and errOverCap", max, n, w.Len(), err)
		}
		w.Reset()
		n, err = copyCapped(&w, strings.NewReader(strings.Repeat("y", int(max))), max, buf)
		if err != nil || n != max || int64(w.Len()) != max {
			t.Errorf("max %d: data exactly at the cap: copied %d, err %v", max, n, err)
		}
	}
	boom := errors.New("boom")
	_, err := copyCapped(io.Discard, io.MultiReader(strings.NewReader("ab"), errReader{boom}), 10, buf)
	var re readErr
	if !errors.As(err, &re) || re.err != boom {
		t.Errorf("read error: got %v, want readErr{boom}", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestCleanName covers names archive/tar itself never returns (NUL), so
// the check stays even if the tar reader changes.
func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dir    bool
		want   string
		reason string
	}{
		{"a/b", false, "a/b", ""},
		{"a/b/", true, "a/b", ""},
		{"a", true, "a", ""},
		{"a/b/", false, "", "clean"},
		{"a/b//", true, "", "clean"},
		{"a\x00b", false, "", "NUL"},
		{"/", true, "", "absolute"},
		{"//", true, "", "absolute"},
		{".", true, "", "clean"},
		{"a/.", false, "", "clean"},
		{"..", true, "", ".."},
		{"...", false, "...", ""},
		{"a..b/..c", false, "a..b/..c", ""},
		{strings.Repeat("a/", 2049), true, "", "4095"},
	} {
		got, reason := cleanName(tc.name, tc.dir)
		if got != tc.want || (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
			t.Errorf("cleanName(%q, %v) = %q, %q; want %q, reason with %q", tc.name, tc.dir, got, reason, tc.want, tc.reason)
		}
	}
	for _, tc := range []struct{ name, target, reason string }{
		{"a/l", "../b", ""},
		{"a/l", "./x/../y/", ""},
		{"a/l", "../../b", "outside"},
		{"l", "/", "absolute"},
		{"l", "a\x00", "NUL"},
		{"l", "", "empty"},
	} {
		reason := checkTarget(tc.name, tc.target)
		if (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
			t.Errorf("checkTarget(%q, %q) = %q, want reason with %q", tc.name, tc.target, reason, tc.reason)
		}
	}
}
