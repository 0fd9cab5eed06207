package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cohuron/deploy/pkg/release"
	"github.com/cohuron/deploy/pkg/trust"
)

type verifyOptions struct {
	env   string
	seq   uint64
	json  bool
	store storeFlags
	trust trustFlags
}

func (o *verifyOptions) addFlags(fs flagSet) {
	fs.StringVar(&o.env, "env", "", "environment whose latest release to verify")
	fs.Uint64Var(&o.seq, "seq", 0, "verify this seq instead of the latest")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
}

func (c *CLI) verify(ctx context.Context, args []string) error {
	var o verifyOptions
	fs := c.flags("verify", "--store URL --env ENV (--policy FILE | --key cosign.pub) [--seq N] [--json]")
	o.addFlags(fs)
	o.store.add(fs)
	o.trust.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.fromTerraform(ctx, &o.store, &o.env, nil, &o.trust); err != nil {
		return err
	}
	if err := required("env", o.env, "store", o.store.url); err != nil {
		return err
	}
	return c.runVerify(ctx, o)
}

type verifyResult struct {
	Env       string    `json:"env"`
	Seq       uint64    `json:"seq"`
	Key       string    `json:"key"`
	SHA256    string    `json:"sha256"`
	Signers   []string  `json:"signers"`
	IssuedAt  time.Time `json:"issuedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	Bundle    any       `json:"bundle"`
	Source    any       `json:"source"`
}

func (c *CLI) runVerify(ctx context.Context, o verifyOptions) error {
	st, err := o.store.open(ctx)
	if err != nil {
		return err
	}
	pol, err := o.trust.load(ctx, c.password(false))
	if err != nil {
		return err
	}
	exp := trust.Expect{Env: o.env, Now: c.now()}
	var v *release.Verified
	if o.seq != 0 {
		v, err = release.FetchVerified(ctx, st, o.env, o.seq, pol, exp)
	} else {
		v, err = release.FetchLatestVerified(ctx, st, o.env, pol, exp)
	}
	if err != nil {
		return err
	}
	rel := v.Release
	if _, err := release.VerifyBundle(ctx, st, rel, pol, c.now()); err != nil {
		return err
	}
	for _, a := range rel.Artifacts {
		// An artifact is checked as the bundle is: digest, size, contents
		// and signature.
		as := *rel
		as.Bundle = a.BundleRef
		if _, err := release.VerifyBundle(ctx, st, &as, pol, c.now()); err != nil {
			return fmt.Errorf("artifact of build hook %q: %w", a.Hook, err)
		}
	}
	if o.json {
		return c.printJSON(verifyResult{Env: rel.Env, Seq: rel.Seq, Key: v.Key, SHA256: v.Digest, Signers: v.Signers,
			IssuedAt: rel.IssuedAt, ExpiresAt: rel.ExpiresAt, Bundle: rel.Bundle, Source: rel.Source})
	}
	fmt.Fprintf(c.out, "verified %s release seq %d in %s\n", rel.Env, rel.Seq, st)
	fmt.Fprintf(c.out, "  manifest %s  sha256 %s  signed by %s\n", v.Key, v.Digest, strings.Join(v.Signers, ", "))
	fmt.Fprintf(c.out, "  issued   %s  expires %s\n", rel.IssuedAt.Format(time.RFC3339), rel.ExpiresAt.Format(time.RFC3339))
	fmt.Fprintf(c.out, "  bundle   %s  sha256 %s  (%d bytes, %d files): digest and signature ok\n", rel.Bundle.Key, rel.Bundle.SHA256, rel.Bundle.Size, rel.Bundle.Files)
	for _, a := range rel.Artifacts {
		fmt.Fprintf(c.out, "  artifact %s  sha256 %s  (%d bytes, %d files, build hook %s): digest and signature ok\n", a.Key, a.SHA256, a.Size, a.Files, a.Hook)
	}
	fmt.Fprintf(c.out, "  source   %s %s@%s %q\n", rel.Source.Repo, rel.Source.Branch, short(rel.Source.Commit), rel.Source.Message)
	return nil
}
