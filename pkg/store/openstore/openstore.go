package openstore

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/dirstore"
	"github.com/cohuron/deploy/pkg/store/s3store"
)

// Options apply to the store kinds that use them.
type Options struct {
	S3Endpoint string // MinIO or another S3-compatible endpoint (path-style)
	S3Region   string
	HTTPClient *http.Client
	// S3Timeout and S3MaxAttempts: see s3store.Options.
	S3Timeout     time.Duration
	S3MaxAttempts int
}

// Open returns the store at rawURL.
func Open(ctx context.Context, rawURL string, o Options) (store.Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fault.Usage(fmt.Errorf("store URL %q: %w", fault.Scrub(rawURL), err))
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fault.Usage(fmt.Errorf("store URL %q: expected file:///absolute/dir (three slashes)", rawURL))
		}
		if !filepath.IsAbs(u.Path) {
			return nil, fault.Usage(fmt.Errorf("store URL %q: the directory must be absolute", rawURL))
		}
		return dirstore.Open(filepath.Clean(u.Path))
	case "s3":
		if u.User != nil || u.RawQuery != "" {
			return nil, fault.Usage(fmt.Errorf("store URL %q: credentials and query strings do not belong in the URL; use the AWS credential chain", fault.Scrub(rawURL)))
		}
		return s3store.Open(ctx, u.Host, u.Path, s3store.Options{Endpoint: o.S3Endpoint, Region: o.S3Region, HTTPClient: o.HTTPClient,
			Timeout: o.S3Timeout, MaxAttempts: o.S3MaxAttempts})
	}
	return nil, fault.Usage(fmt.Errorf("store URL %q: expected file:///abs/dir or s3://bucket/prefix", fault.Scrub(rawURL)))
}
