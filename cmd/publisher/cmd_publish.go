package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cohuron/deploy/pkg/gitbundle"
	"github.com/cohuron/deploy/pkg/release"
)

type publishOptions struct {
	repo, ref, branch string
	env, manifest     string
	keys              keyRefs
	ttl               time.Duration
	json              bool
	store             storeFlags
	trust             trustFlags
	build             buildFlags
}

func (o *publishOptions) addFlags(fs flagSet) {
	fs.StringVar(&o.repo, "repo", "", "application repository to bundle; omit for a config-only release that keeps the current bundle")
	fs.StringVar(&o.ref, "ref", "HEAD", "branch, tag or commit to bundle (with --repo)")
	fs.StringVar(&o.branch, "branch", "", "branch name to record (default: from --ref)")
	fs.StringVar(&o.env, "env", "", "environment to publish to")
	fs.StringVar(&o.manifest, "manifest", "", "environment manifest (default manifests/ENV.yaml)")
	o.keys.add(fs)
	o.build.add(fs)
	fs.DurationVar(&o.ttl, "ttl", release.DefaultTTL, "how long the release stays valid")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
}

func (c *CLI) publish(ctx context.Context, args []string) error {
	var o publishOptions
	fs := c.flags("publish", "[--repo PATH --ref REF] --env ENV --store URL --key KEYREF [--manifest FILE] [--json]")
	o.addFlags(fs)
	o.store.add(fs)
	fs.StringVar(&o.trust.policy, "policy", "", "the hosts' trust policy: verifies the release whose bundle a config-only release keeps (default: the signing key), and holds the latest hint until the policy's threshold of signers signed (publisher sign)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.fromTerraform(ctx, &o.store, &o.env, &o.keys, nil); err != nil {
		return err
	}
	if err := required("env", o.env, "store", o.store.url, "key", o.keys.String()); err != nil {
		return err
	}
	if o.manifest == "" {
		o.manifest = filepath.Join("manifests", o.env+".yaml")
	}
	return c.runPublish(ctx, o)
}

func (c *CLI) runPublish(ctx context.Context, o publishOptions) error {
	st, err := o.store.open(ctx)
	if err != nil {
		return err
	}
	const refused = "nothing was published"
	m, err := loadEnvironment(o.manifest, o.env)
	if err != nil {
		return c.refused(err, refused)
	}
	signers, err := c.signers(ctx, o.keys)
	if err != nil {
		return err
	}
	req := release.Request{Env: m.env, TTL: o.ttl, Check: m.fit}
	if o.trust.policy != "" {
		if req.Policy, err = o.trust.load(ctx, c.password(false)); err != nil {
			return err
		}
	}
	if o.repo != "" {
		tmp, err := os.MkdirTemp("", "publisher-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		res, path, err := buildBundle(ctx, gitbundle.Options{Repo: o.repo, Ref: o.ref, Branch: o.branch}, tmp)
		if err != nil {
			return err
		}
		for _, s := range res.Skipped {
			c.log.Warn("not bundled", "entry", s)
		}
		req.Bundle = &release.LocalBundle{Path: path, Name: res.Name, SHA256: res.SHA256, Size: res.Size, Source: res.Source, Index: res.Index}
	}
	p := &release.Publisher{Store: st, Signers: signers, Now: c.now, Log: c.log, Progress: c.progress, Builder: c.builder(o.build)}
	res, err := p.Publish(ctx, req)
	if err != nil {
		return c.refused(err, refused)
	}
	if o.json {
		return c.printJSON(res)
	}
	kind := "release"
	if res.ConfigOnly {
		kind = fmt.Sprintf("config-only release (bundle of seq %d)", res.ReusedSeq)
	}
	fmt.Fprintf(c.out, "published %s %s seq %d to %s\n", o.env, kind, res.Seq, st)
	fmt.Fprintf(c.out, "  manifest %s  sha256 %s\n", res.Key, res.Digest)
	fmt.Fprintf(c.out, "  bundle   %s  sha256 %s  (%d bytes, %s)\n", res.Bundle.Key, res.Bundle.SHA256, res.Bundle.Size, uploadedWord(res.BundleUploaded, res.ConfigOnly))
	for _, a := range res.Artifacts {
		how := "already in store: built from the same inputs"
		if slices.Contains(res.Built, a.Hook) {
			how = "built now"
		}
		fmt.Fprintf(c.out, "  artifact %s  sha256 %s  (%d bytes, build hook %s, %s)\n", a.Key, a.SHA256, a.Size, a.Hook, how)
	}
	fmt.Fprintf(c.out, "  source   %s %s@%s\n", res.Source.Repo, res.Source.Branch, short(res.Source.Commit))
	c.printAwaiting(res, o.store.url, o.trust.policy)
	return nil
}

// printAwaiting says who must still sign a release agents do not see yet.
func (c *CLI) printAwaiting(res *release.Result, storeURL, policy string) {
	if res.AwaitingSignatures > 0 {
		fmt.Fprintf(c.out, "  awaiting %d more trusted signer(s): agents do not see it until then; each co-signer runs\n", res.AwaitingSignatures)
		fmt.Fprintf(c.out, "           publisher sign --store %s --env %s --seq %d --policy %s --key KEYREF\n", storeURL, res.Env, res.Seq, policy)
	}
}

func uploadedWord(uploaded, configOnly bool) string {
	switch {
	case configOnly:
		return "kept"
	case uploaded:
		return "uploaded"
	}
	return "already in store"
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
