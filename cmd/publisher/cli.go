package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/cohuron/deploy/pkg/envvars"
	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/signing"
	"github.com/cohuron/deploy/pkg/signing/kmssign"
	"github.com/cohuron/deploy/pkg/store"
	"github.com/cohuron/deploy/pkg/store/openstore"
	"github.com/cohuron/deploy/pkg/tfoutput"
	"github.com/cohuron/deploy/pkg/trust"
)

// CLI is the publisher's command line, with its streams and clock
// injected so tests run it in-process.
type CLI struct {
	in       io.Reader
	out, err io.Writer
	now      func() time.Time
	log      *slog.Logger
	// terminal reports whether err is a terminal (progress, prompts).
	terminal bool
}

// NewCLI returns a CLI writing to out and err.
func NewCLI(in io.Reader, out, errw io.Writer, now func() time.Time) *CLI {
	c := &CLI{in: in, out: out, err: errw, now: now}
	if f, ok := errw.(*os.File); ok {
		c.terminal = term.IsTerminal(int(f.Fd()))
	}
	return c
}

type command struct {
	name    string
	summary string
	run     func(c *CLI, ctx context.Context, args []string) error
}

var commands = []command{
	{"keygen", "write a cosign-compatible key pair (cosign.key, cosign.pub)", (*CLI).keygen},
	{"build", "build the reproducible bundle of a commit", (*CLI).build},
	{"publish", "upload a bundle and a signed release (config-only without --repo)", (*CLI).publish},
	{"sign", "co-sign a published release for a policy that needs several signers", (*CLI).sign},
	{"verify", "verify the latest release end to end, as an agent would", (*CLI).verify},
	{"check", "validate environment manifests (with --repo, against the app's bundle too) and trust policies (for pull requests)", (*CLI).check},
	{"preview", "what publishing a changed environment manifest would do to the hosts, and why (for pull requests)", (*CLI).preview},
	{"rollback", "publish a new release that points at the bundle and spec of an older one", (*CLI).rollback},
	{"status", "one row per host: release, health, last converge, error", (*CLI).status},
}

func (c *CLI) usage() {
	fmt.Fprintf(c.err, "Usage: publisher [-v] COMMAND [flags]\n\nCommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(c.err, "  %-9s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(c.err, "\nRun 'publisher COMMAND --help' for a command's flags.\n\nExit codes: 0 ok, 1 error, 2 usage, 3 input rejected (signature, policy, replay, expiry, invalid manifest).\n\nEnvironment:\n")
	for _, v := range envvars.All {
		fmt.Fprintf(c.err, "  %-22s %s\n", v.Name, v.Doc)
	}
}

// Run runs one command and returns the process exit code.
func (c *CLI) Run(args []string) int {
	level := slog.LevelWarn
	for len(args) > 0 && (args[0] == "-v" || args[0] == "--verbose") {
		level = slog.LevelInfo
		args = args[1:]
	}
	c.log = slog.New(slog.NewTextHandler(c.err, &slog.HandlerOptions{Level: level}))
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		c.usage()
		if len(args) == 0 {
			return fault.ExitUsage
		}
		return fault.ExitOK
	}
	for _, cmd := range commands {
		if cmd.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := cmd.run(c, ctx, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return fault.ExitOK
		}
		if err != nil {
			fmt.Fprintf(c.err, "publisher %s: %s\n", cmd.name, fault.Scrub(err.Error()))
		}
		return fault.ExitCode(err)
	}
	fmt.Fprintf(c.err, "publisher: unknown command %q\n\n", args[0])
	c.usage()
	return fault.ExitUsage
}

// flags returns a FlagSet for a command; parse errors are usage errors.
func (c *CLI) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("publisher "+name, flag.ContinueOnError)
	fs.SetOutput(c.err)
	fs.Usage = func() {
		fmt.Fprintf(c.err, "Usage: publisher %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fault.Usage(err)
	}
	if fs.NArg() > 0 && fs.Name() != "publisher check" {
		return fault.Usage(fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	return nil
}

func required(pairs ...string) error {
	var missing []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			missing = append(missing, "--"+pairs[i])
		}
	}
	if len(missing) > 0 {
		return fault.Usage(fmt.Errorf("missing required flag(s): %s", strings.Join(missing, ", ")))
	}
	return nil
}

// storeFlags are shared by commands that talk to a store.
type storeFlags struct {
	url          string
	s3Endpoint   string
	s3Region     string
	terraformDir string
}

func (s *storeFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&s.url, "store", "", "store URL: file:///abs/dir or s3://bucket/prefix (default with --terraform-dir: its store_url output)")
	fs.StringVar(&s.s3Endpoint, "s3-endpoint", envvars.S3Endpoint.Get(), "S3 endpoint override, path-style (MinIO); default $"+envvars.S3Endpoint.Name)
	fs.StringVar(&s.s3Region, "s3-region", "", "S3 region when AWS_REGION and the AWS profile set none (default us-east-1, or with --terraform-dir its region output)")
	fs.StringVar(&s.terraformDir, "terraform-dir", "", "an applied infra-tf root (initialised, or with local state): `terraform output -json` there fills --store, --s3-region, --env and the KMS --key the flags leave empty")
}

// terraform fills the store URL, the S3 region and the environment from
// the outputs of --terraform-dir where the flags left them empty, and
// returns the outputs (nil without --terraform-dir) for the KMS key. A
// flag given explicitly wins; an --env that contradicts the root is an
// error, since the root's store and key belong to its environment.
func (s *storeFlags) terraform(ctx context.Context, log *slog.Logger, env *string) (*tfoutput.Outputs, error) {
	if s.terraformDir == "" {
		return nil, nil
	}
	out, err := tfoutput.Read(ctx, s.terraformDir, os.Environ())
	if err != nil {
		return nil, fault.Usage(err)
	}
	if env != nil {
		switch {
		case *env == "":
			*env = out.Env
		case *env != out.Env:
			return nil, fault.Usage(fmt.Errorf("--env %s, but --terraform-dir %s is environment %s (its env output): give the root of %s, or leave out --env", *env, s.terraformDir, out.Env, *env))
		}
	}
	if s.url == "" {
		s.url = out.StoreURL
	}
	if s.s3Region == "" {
		s.s3Region = out.Region
	}
	log.Info("read terraform outputs", "dir", s.terraformDir, "store", s.url, "region", s.s3Region, "env", out.Env, "kmsKey", out.KMSKey)
	return out, nil
}

func (s *storeFlags) open(ctx context.Context) (store.Store, error) {
	return openstore.Open(ctx, s.url, openstore.Options{S3Endpoint: s.s3Endpoint, S3Region: s.s3Region})
}

// trustFlags choose the policy a verification uses.
type trustFlags struct {
	policy string
	key    string
}

func (t *trustFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&t.policy, "policy", "", "trust policy file (policies/ENV.yaml)")
	fs.StringVar(&t.key, "key", "", "key to trust, as a policy trusting this one key would: a public key file, or the public half of a signing key (cosign.key, awskms:///…)")
}

func (t *trustFlags) load(ctx context.Context, pass signing.PassFunc) (*trust.Policy, error) {
	switch {
	case t.policy != "" && t.key != "":
		return nil, fault.Usage(errors.New("give --policy or --key, not both"))
	case t.policy != "":
		p, err := trust.Load(t.policy)
		if err != nil {
			return nil, fault.Usage(fmt.Errorf("loading trust policy: %w", err))
		}
		return p, nil
	case t.key == "":
		return nil, fault.Usage(errors.New("missing --policy FILE or --key cosign.pub"))
	}
	pem, err := t.publicKey(ctx, pass)
	if err != nil {
		return nil, fault.Usage(err)
	}
	p, err := trust.ForKey(pem)
	if err != nil {
		return nil, fault.Usage(fmt.Errorf("%s: %w", t.key, err))
	}
	return p, nil
}

// publicKey reads --key: a public key file, or the public half of a
// signing key — a KMS key (kms:GetPublicKey is all it needs) or a cosign
// key file — so one KEYREF serves a workflow that publishes and verifies.
func (t *trustFlags) publicKey(ctx context.Context, pass signing.PassFunc) ([]byte, error) {
	if !signing.IsKMSRef(t.key) {
		pem, err := os.ReadFile(t.key)
		if err != nil {
			return nil, fmt.Errorf("reading public key: %w", err)
		}
		if !bytes.Contains(pem, []byte("PRIVATE KEY-----")) {
			return pem, nil
		}
	}
	sv, err := kmssign.LoadSigner(ctx, t.key, pass)
	if err != nil {
		return nil, err
	}
	pem, err := signing.PublicKeyPEM(ctx, sv)
	if err != nil {
		return nil, fmt.Errorf("public key of %s: %w", t.key, err)
	}
	return pem, nil
}

// password reads COSIGN_PASSWORD, or prompts on a terminal.
func (c *CLI) password(confirm bool) signing.PassFunc {
	return func(bool) ([]byte, error) {
		if pw, ok := envvars.CosignPassword.Lookup(); ok {
			return []byte(pw), nil
		}
		f, ok := c.in.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return nil, fault.Usage(fmt.Errorf("set %s (the key password; may be empty)", envvars.CosignPassword.Name))
		}
		fmt.Fprint(c.err, "Enter password for private key: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.err)
		if err != nil || !confirm {
			return pw, err
		}
		fmt.Fprint(c.err, "Enter password for private key again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.err)
		if err != nil {
			return nil, err
		}
		if string(again) != string(pw) {
			return nil, fault.Usage(errors.New("passwords do not match"))
		}
		return pw, nil
	}
}

func (c *CLI) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress reports upload progress on a terminal, at most 5 times a second.
func (c *CLI) progress(label string, size int64, r io.Reader) io.Reader {
	if !c.terminal {
		return r
	}
	return &progressReader{r: r, label: label, size: size, w: c.err, now: c.now}
}

type progressReader struct {
	r     io.Reader
	label string
	size  int64
	done  int64
	last  time.Time
	w     io.Writer
	now   func() time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if t := p.now(); t.Sub(p.last) > 200*time.Millisecond || err == io.EOF {
		p.last = t
		pct := 100.0
		if p.size > 0 {
			pct = float64(p.done) * 100 / float64(p.size)
		}
		fmt.Fprintf(p.w, "\r%s: %5.1f%% (%s / %s)", p.label, pct, mib(p.done), mib(p.size))
		if err == io.EOF {
			fmt.Fprintln(p.w)
		}
	}
	return n, err
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
