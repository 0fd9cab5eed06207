package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/signing"
)

type keygenOptions struct {
	out   string
	force bool
}

func (o *keygenOptions) addFlags(fs flagSet) {
	fs.StringVar(&o.out, "out", ".", "directory for cosign.key and cosign.pub")
	fs.BoolVar(&o.force, "force", false, "overwrite existing key files")
}

func (c *CLI) keygen(ctx context.Context, args []string) error {
	var o keygenOptions
	fs := c.flags("keygen", "[--out DIR] [--force]")
	o.addFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	return c.runKeygen(ctx, o)
}

func (c *CLI) runKeygen(_ context.Context, o keygenOptions) error {
	priv := filepath.Join(o.out, "cosign.key")
	pub := filepath.Join(o.out, "cosign.pub")
	if !o.force {
		for _, p := range []string{priv, pub} {
			if _, err := os.Stat(p); err == nil {
				return fault.Usage(fmt.Errorf("%s exists; pass --force to overwrite it", p))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	privPEM, pubPEM, err := signing.GenerateKeyPair(c.password(true))
	if err != nil {
		return fmt.Errorf("generating key pair: %w", err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(priv, privPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "Private key written to %s\nPublic key written to %s\n", priv, pub)
	return nil
}
