package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/cohuron/deploy/pkg/artifact"
	"github.com/cohuron/deploy/pkg/envvars"
	"github.com/cohuron/deploy/pkg/extract"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/release"
)

// buildFlags configure the publish-time build hooks.
type buildFlags struct {
	user, cache string
}

func (b *buildFlags) add(fs flagSet) {
	fs.StringVar(&b.user, "build-user", envvars.BuildUser.Get(), "unprivileged account that runs publish-time build hooks and their pnpm install when the publisher is root (they never run as root; default $COHURON_BUILD_USER)")
	fs.StringVar(&b.cache, "build-cache", "", "where publish-time builds keep node_modules per dependency key (default $XDG_CACHE_HOME/cohuron-publisher, or ~/.cache/cohuron-publisher)")
}

// builder runs publish-time hooks with the publisher's PATH.
func (c *CLI) builder(b buildFlags) release.Builder {
	cache := b.cache
	if cache == "" {
		if d, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(d, "cohuron-publisher")
		}
	}
	return &artifactBuilder{b: &artifact.Builder{
		Env:      []string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"},
		User:     b.user,
		CacheDir: cache,
		Limits:   extract.Limits{Files: 200000, Bytes: 4 << 30},
		Log:      c.log,
		Now:      c.now,
	}}
}

type artifactBuilder struct{ b *artifact.Builder }

func (a *artifactBuilder) Build(ctx context.Context, spec *manifest.Spec, in manifest.Inputs, h manifest.Hook, bundlePath string, mtime time.Time, out string) (*release.LocalBundle, error) {
	built, err := a.b.Build(ctx, spec, in, h, bundlePath, mtime, out)
	if err != nil {
		return nil, err
	}
	return &release.LocalBundle{Path: built.Path, SHA256: built.SHA256, Size: built.Size, Index: built.Index}, nil
}
