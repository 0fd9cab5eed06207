package openstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/store/openstore"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := openstore.Open(ctx, "file://"+dir, openstore.Options{})
	if err != nil || s.String() != "file://"+dir {
		t.Fatalf("file store: %v, %v", s, err)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", dir+"/none")
	s, err = openstore.Open(ctx, "s3://bucket/some/prefix", openstore.Options{S3Endpoint: "http://127.0.0.1:1"})
	if err != nil || s.String() != "s3://bucket/some/prefix" {
		t.Fatalf("s3 store: %v, %v", s, err)
	}
	for url, want := range map[string]string{
		"relative/dir":                      "expected file:///abs/dir or s3://bucket/prefix",
		"file://host/dir":                   "three slashes",
		"file://./rel":                      "three slashes",
		"s3://AKIA:secret@bucket/x":         "credentials and query strings",
		"s3://bucket/x?X-Amz-Signature=abc": "credentials and query strings",
		"gs://bucket":                       "expected file:///abs/dir or s3://bucket/prefix",
		"s3://bucket/../x":                  "prefix",
	} {
		_, err := openstore.Open(ctx, url, openstore.Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", url, err, want)
			continue
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "abc") {
			t.Errorf("Open(%q) error leaks a credential: %v", url, err)
		}
		if url != "s3://bucket/../x" && fault.ExitCode(err) != fault.ExitUsage {
			t.Errorf("Open(%q): exit code %d, want usage", url, fault.ExitCode(err))
		}
	}
}
