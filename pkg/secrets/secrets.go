package secrets

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/cohuron/deploy/pkg/manifest"
)

// Resolver turns a value into the string written to an env file.
type Resolver interface {
	Resolve(ctx context.Context, v manifest.Value) (string, error)
}

// Chain resolves literals itself and each reference kind with its resolver.
type Chain struct {
	File *FileResolver
	AWS  *AWSResolver
}

// Resolve implements Resolver.
func (c *Chain) Resolve(ctx context.Context, v manifest.Value) (string, error) {
	switch v.RefKind {
	case "":
		return v.Literal, nil
	case manifest.RefFile:
		if c.File == nil {
			return "", fmt.Errorf("%s: no file resolver configured", v)
		}
		return c.File.Resolve(ctx, v)
	case manifest.RefSSM, manifest.RefSecretsManager:
		if c.AWS == nil {
			return "", fmt.Errorf("%s: AWS secrets are not configured on this host", v)
		}
		return c.AWS.Resolve(ctx, v)
	}
	return "", fmt.Errorf("%s: unknown reference kind", v)
}

// FileResolver reads {file: PATH}; with Root set, PATH is taken under Root
// (so tests and unprivileged runs keep secrets in a temp dir).
type FileResolver struct{ Root string }

// Resolve implements Resolver.
func (f *FileResolver) Resolve(_ context.Context, v manifest.Value) (string, error) {
	p := filepath.Clean("/" + v.Ref)
	if f.Root != "" {
		p = filepath.Join(f.Root, p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", v, err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// AWSResolver reads SSM parameters and Secrets Manager secrets with the
// standard credential chain (the instance role on EC2).
type AWSResolver struct {
	Region string
	once   sync.Once
	ssm    *ssm.Client
	sm     *secretsmanager.Client
	err    error
}

func (a *AWSResolver) init(ctx context.Context) error {
	a.once.Do(func() {
		var opts []func(*config.LoadOptions) error
		if a.Region != "" {
			opts = append(opts, config.WithRegion(a.Region))
		}
		cfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			a.err = fmt.Errorf("loading AWS configuration: %w", err)
			return
		}
		a.ssm = ssm.NewFromConfig(cfg)
		a.sm = secretsmanager.NewFromConfig(cfg)
	})
	return a.err
}

// Resolve implements Resolver.
func (a *AWSResolver) Resolve(ctx context.Context, v manifest.Value) (string, error) {
	if err := a.init(ctx); err != nil {
		return "", err
	}
	switch v.RefKind {
	case manifest.RefSSM:
		out, err := a.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(v.Ref), WithDecryption: aws.Bool(true)})
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", v, err)
		}
		if out.Parameter == nil || out.Parameter.Value == nil {
			return "", fmt.Errorf("resolving %s: parameter has no value", v)
		}
		return *out.Parameter.Value, nil
	case manifest.RefSecretsManager:
		out, err := a.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(v.Ref)})
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", v, err)
		}
		if out.SecretString == nil {
			return "", fmt.Errorf("resolving %s: secret is binary; expected a string", v)
		}
		return *out.SecretString, nil
	}
	return "", errors.New("unsupported reference " + v.String())
}

// Render writes one env file's contents: KEY=value lines, sorted, values
// quoted when they need it.
func Render(ctx context.Context, r Resolver, f manifest.EnvFile) ([]byte, map[string]string, error) {
	vals := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(f.Vars)) { // a stable order of secret lookups
		val, err := r.Resolve(ctx, f.Vars[name])
		if err != nil {
			return nil, nil, fmt.Errorf("env file %s, %s: %w", f.Path, name, err)
		}
		vals[name] = val
	}
	data, err := Format(vals)
	if err != nil {
		return nil, nil, fmt.Errorf("env file %s, %w", f.Path, err)
	}
	return data, vals, nil
}

// Format writes resolved values as a dotenv file, sorted by name.
func Format(vals map[string]string) ([]byte, error) {
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		val := vals[name]
		if strings.ContainsAny(val, "\n\r\x00") {
			return nil, fmt.Errorf("%s: value contains a newline or NUL", name)
		}
		q, ok := quote(val)
		if !ok {
			return nil, fmt.Errorf("%s: value has both quote kinds and a backslash or double quote; dotenv cannot hold it", name)
		}
		b.WriteString(name + "=" + q + "\n")
	}
	return []byte(b.String()), nil
}

// quote returns v as a dotenv value: bare when safe, else single-quoted
// (taken literally by dotenv parsers), else double-quoted.
func quote(v string) (string, bool) {
	switch {
	case v != "" && !strings.ContainsAny(v, " \t#\"'$`\\"):
		return v, true
	case !strings.Contains(v, "'"):
		return "'" + v + "'", true
	case !strings.ContainsAny(v, "\"\\$`"):
		return `"` + v + `"`, true
	}
	return "", false
}
