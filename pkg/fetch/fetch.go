package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/trust"
)

// Fetcher downloads bundles from one store.
type Fetcher struct {
	Store    store.Store
	StoreURL string // the store's URL: file:///dir or s3://bucket/prefix
	Policy   *trust.Policy
}

// URL is where the bundle of rel lives, as go-getter sees it.
func (f *Fetcher) URL(rel *manifest.Release) (string, error) {
	if err := store.CheckKey(rel.Bundle.Key); err != nil || !strings.HasPrefix(rel.Bundle.Key, "bundles/") {
		return "", &trust.VerificationError{Check: "bundle location", Expected: "a key under bundles/ in " + f.StoreURL, Found: fmt.Sprintf("%q", rel.Bundle.Key)}
	}
	return strings.TrimSuffix(f.StoreURL, "/") + "/" + rel.Bundle.Key, nil
}

// Fetch writes the bundle of rel to dst (a file path).
func (f *Fetcher) Fetch(ctx context.Context, rel *manifest.Release, dst string) error {
	src, err := f.URL(rel)
	if err != nil {
		return err
	}
	if strings.Contains(src, "::") {
		return &trust.VerificationError{Check: "bundle location", Expected: "a plain URL", Found: "a forced getter in " + src}
	}
	u, err := url.Parse(src)
	if err != nil {
		return fault.Rejected(fmt.Errorf("bundle URL %s: %w", src, err))
	}
	if !f.Policy.AllowsSource(u.Scheme) {
		return &trust.VerificationError{Check: "bundle source", Expected: "one of " + strings.Join(f.Policy.Spec.BundleSources, ", ") + " (policy " + f.Policy.Metadata.Name + ")", Found: u.Scheme}
	}
	g := &storeGetter{store: f.Store, scheme: u.Scheme, base: strings.TrimSuffix(f.StoreURL, "/") + "/", key: rel.Bundle.Key, max: rel.Bundle.Size}
	// Only our getter, no decompressors, no symlinks: go-getter dispatches
	// and never guesses.
	client := &getter.Client{
		Getters:         []getter.Getter{g},
		Decompressors:   map[string]getter.Decompressor{},
		DisableSymlinks: true,
	}
	if _, err := client.Get(ctx, &getter.Request{Src: src, Dst: dst, GetMode: getter.ModeFile}); err != nil {
		if fault.KindOf(err) != fault.KindUnknown {
			return err
		}
		var ve *trust.VerificationError
		if errors.As(err, &ve) {
			return ve
		}
		return fault.Transient(fmt.Errorf("fetching %s: %w", fault.Scrub(src), err))
	}
	return nil
}

// storeGetter is a go-getter Getter that reads one key from the store,
// refusing more than max bytes.
type storeGetter struct {
	store  store.Store
	scheme string
	base   string
	key    string
	max    int64
}

func (g *storeGetter) Mode(context.Context, *url.URL) (getter.Mode, error) {
	return getter.ModeFile, nil
}

// Detect accepts only the exact bundle URL of this release, never a
// forced getter.
func (g *storeGetter) Detect(req *getter.Request) (bool, error) {
	if req.Forced != "" {
		return false, fmt.Errorf("forced getter %q refused", req.Forced)
	}
	return req.Src == g.base+g.key, nil
}

func (g *storeGetter) Get(context.Context, *getter.Request) error {
	return errors.New("bundles are single files; directory mode is not supported")
}

func (g *storeGetter) GetFile(ctx context.Context, req *getter.Request) error {
	u := req.URL()
	if u == nil || u.String() != g.base+g.key {
		return &trust.VerificationError{Check: "bundle location", Expected: g.base + g.key, Found: req.Src}
	}
	dst := req.Dst
	rc, _, err := g.store.Get(ctx, g.key, "")
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(rc, g.max+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n > g.max {
		return &trust.VerificationError{Check: "bundle size", Expected: fmt.Sprintf("%d bytes (signed)", g.max), Found: "more"}
	}
	return nil
}
