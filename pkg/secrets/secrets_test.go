package secrets_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/secrets"
)

func lit(s string) manifest.Value  { return manifest.Value{Literal: s} }
func file(s string) manifest.Value { return manifest.Value{RefKind: manifest.RefFile, Ref: s} }

// secretsDir writes name→content under a temp dir, the resolver's Root.
func secretsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestChainResolve(t *testing.T) {
	root := secretsDir(t, map[string]string{
		"etc/cohuron/jwt":    "hunter2\n",
		"etc/cohuron/crlf":   "value\r\n\r\n",
		"etc/cohuron/spaces": "  padded  \n",
		"etc/passwd":         "not the real one",
	})
	c := &secrets.Chain{File: &secrets.FileResolver{Root: root}}
	tests := []struct {
		name string
		v    manifest.Value
		want string
	}{
		{"literal", lit("hello world"), "hello world"},
		{"empty literal", lit(""), ""},
		{"file, trailing newline dropped", file("/etc/cohuron/jwt"), "hunter2"},
		{"file, trailing CRLFs dropped", file("/etc/cohuron/crlf"), "value"},
		{"file, other whitespace kept", file("/etc/cohuron/spaces"), "  padded  "},
		{"relative file ref is under root", file("etc/cohuron/jwt"), "hunter2"},
		{"dot-dot cannot escape root", file("../../etc/passwd"), "not the real one"},
		{"dot-dot in the middle cannot escape root", file("/etc/cohuron/../../../../etc/passwd"), "not the real one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(context.Background(), tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Resolve(%s) = %q, want %q", tt.v, got, tt.want)
			}
		})
	}
}

func TestChainErrors(t *testing.T) {
	root := secretsDir(t, map[string]string{"present": "hunter2"})
	tests := []struct {
		name  string
		chain *secrets.Chain
		v     manifest.Value
		want  []string // substrings of the error
		is    error
	}{
		{"missing file", &secrets.Chain{File: &secrets.FileResolver{Root: root}}, file("/etc/cohuron/missing"),
			[]string{"file:/etc/cohuron/missing"}, fs.ErrNotExist},
		{"no file resolver", &secrets.Chain{}, file("/present"), []string{"file:/present", "no file resolver"}, nil},
		{"no AWS resolver, ssm", &secrets.Chain{File: &secrets.FileResolver{Root: root}}, manifest.Value{RefKind: manifest.RefSSM, Ref: "/demo/jwt"},
			[]string{"ssm:/demo/jwt", "AWS secrets are not configured"}, nil},
		{"no AWS resolver, secrets manager", &secrets.Chain{}, manifest.Value{RefKind: manifest.RefSecretsManager, Ref: "demo/db"},
			[]string{"secretsManager:demo/db", "AWS secrets are not configured"}, nil},
		{"unknown kind", &secrets.Chain{}, manifest.Value{RefKind: "vault", Ref: "x"}, []string{"vault:x", "unknown reference kind"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.chain.Resolve(context.Background(), tt.v)
			if err == nil {
				t.Fatalf("Resolve(%s) = %q, want an error", tt.v, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows a secret value", err)
			}
		})
	}
}

func TestRender(t *testing.T) {
	root := secretsDir(t, map[string]string{"jwt": "hunter2\n"})
	c := &secrets.Chain{File: &secrets.FileResolver{Root: root}}
	tests := []struct {
		name string
		vars map[string]manifest.Value
		want string
	}{
		{"sorted, bare", map[string]manifest.Value{"PORT": lit("4000"), "APP_GREETING": lit("hello"), "JWT_SECRET": file("/jwt")},
			"APP_GREETING=hello\nJWT_SECRET=hunter2\nPORT=4000\n"},
		{"empty value is quoted", map[string]manifest.Value{"E": lit("")}, "E=''\n"},
		{"space", map[string]manifest.Value{"G": lit("hello world")}, "G='hello world'\n"},
		{"tab", map[string]manifest.Value{"G": lit("a\tb")}, "G='a\tb'\n"},
		{"hash", map[string]manifest.Value{"G": lit("a#b")}, "G='a#b'\n"},
		{"dollar is not expanded", map[string]manifest.Value{"G": lit("$HOME")}, "G='$HOME'\n"},
		{"backtick", map[string]manifest.Value{"G": lit("`id`")}, "G='`id`'\n"},
		{"backslash", map[string]manifest.Value{"G": lit(`a\nb`)}, `G='a\nb'` + "\n"},
		{"double quote", map[string]manifest.Value{"G": lit(`say "hi"`)}, `G='say "hi"'` + "\n"},
		{"single quote", map[string]manifest.Value{"G": lit("it's")}, `G="it's"` + "\n"},
		{"single quote and space", map[string]manifest.Value{"G": lit("it is Bob's")}, `G="it is Bob's"` + "\n"},
		{"equals sign stays bare", map[string]manifest.Value{"U": lit("a=b")}, "U=a=b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, vals, err := secrets.Render(context.Background(), c, manifest.EnvFile{Path: "apps/api/.env", Vars: tt.vars})
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.want {
				t.Fatalf("Render = %q, want %q", data, tt.want)
			}
			if len(vals) != len(tt.vars) {
				t.Fatalf("resolved %d values, want %d", len(vals), len(tt.vars))
			}
			for name, v := range tt.vars {
				want, _ := c.Resolve(context.Background(), v)
				if vals[name] != want {
					t.Errorf("resolved %s = %q, want %q (unquoted)", name, vals[name], want)
				}
			}
		})
	}
}

func TestRenderRejects(t *testing.T) {
	// JWT_SECRET sorts before Z_BAD, so the secret was resolved when the
	// later variable fails: the error must still not show it.
	root := secretsDir(t, map[string]string{
		"jwt":       "hunter2",
		"multiline": "line1\nline2\n", // inner newline survives the trim
	})
	c := &secrets.Chain{File: &secrets.FileResolver{Root: root}}
	tests := []struct {
		name string
		bad  manifest.Value
		want string
	}{
		{"newline", lit("a\nb"), "newline"},
		{"carriage return", lit("a\rb"), "newline"},
		{"NUL", lit("a\x00b"), "NUL"},
		{"newline from a secret file", file("/multiline"), "newline"},
		{"both quotes and a backslash", lit(`it's a \"x\"`), "both quote kinds"},
		{"both quotes", lit(`it's "x"`), "both quote kinds"},
		{"single quote and a dollar", lit(`it's $HOME`), "both quote kinds"},
		{"single quote and a backtick", lit("it's `id`"), "both quote kinds"},
		{"missing secret file", file("/nope"), "file:/nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := manifest.EnvFile{Path: "apps/api/.env", Vars: map[string]manifest.Value{"JWT_SECRET": file("/jwt"), "Z_BAD": tt.bad}}
			data, vals, err := secrets.Render(context.Background(), c, f)
			if err == nil {
				t.Fatalf("Render = %q, want an error", data)
			}
			if data != nil || vals != nil {
				t.Errorf("Render returned output with its error: %q, %v", data, vals)
			}
			msg := err.Error()
			for _, w := range []string{"apps/api/.env", "Z_BAD", tt.want} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, secret := range []string{"hunter2", "line1", "line2"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q shows a secret value (%q)", msg, secret)
				}
			}
			if tt.bad.Literal != "" && strings.Contains(msg, tt.bad.Literal) {
				t.Errorf("error %q shows the rejected value", msg)
			}
		})
	}
}

// countingResolver checks Render asks for each variable once, in order.
type countingResolver struct{ names []string }

func (r *countingResolver) Resolve(_ context.Context, v manifest.Value) (string, error) {
	r.names = append(r.names, v.Literal)
	return v.Literal, nil
}

func TestRenderResolvesInSortedOrder(t *testing.T) {
	r := &countingResolver{}
	vars := map[string]manifest.Value{}
	for _, n := range []string{"D", "B", "A", "C", "A2", "A10"} {
		vars[n] = lit(n)
	}
	data, _, err := secrets.Render(context.Background(), r, manifest.EnvFile{Path: ".env", Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	if want := "A,A10,A2,B,C,D"; strings.Join(r.names, ",") != want {
		t.Fatalf("resolved %v, want %s", r.names, want)
	}
	if want := "A=A\nA10=A10\nA2=A2\nB=B\nC=C\nD=D\n"; string(data) != want {
		t.Fatalf("Render = %q, want %q", data, want)
	}
}
