package s3store_test

import (
	"context"
	"crypto/rand"
	"net/url"
	"strings"
	"testing"

	"github.com/cohuron/deploy/internal/testenv"
	"github.com/cohuron/deploy/pkg/envvars"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/s3store"
	"github.com/cohuron/deploy/pkg/store/storetest"
)

// TestConformanceMinIO runs the suite against a real MinIO server.
func TestConformanceMinIO(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.SetEnv(t)
	ctx := context.Background()
	storetest.Run(t, func(t *testing.T) store.Store {
		bucket := "t" + strings.ToLower(rand.Text()[:12])
		s, err := s3store.Open(ctx, bucket, "deploy/prefix", s3store.Options{Endpoint: m.Endpoint})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureBucket(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestConformanceS3 runs the suite against real S3 when COHURON_TEST_S3
// names a bucket the credentials may write (each run uses a fresh prefix).
func TestConformanceS3(t *testing.T) {
	raw := envvars.TestS3.Get()
	if raw == "" {
		t.Skip("COHURON_TEST_S3 is not set; set it to s3://bucket/prefix to test real S3")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" {
		t.Fatalf("COHURON_TEST_S3=%q: expected s3://bucket/prefix", raw)
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := s3store.Open(context.Background(), u.Host, strings.Trim(u.Path, "/")+"/"+strings.ToLower(rand.Text()[:10]), s3store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
