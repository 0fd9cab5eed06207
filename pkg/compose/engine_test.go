package compose

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Engine API only where the docker CLI would use that same unix
// socket; the CLI wherever it knows more.
func TestEngineOf(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".docker"), 0o755)
	os.WriteFile(filepath.Join(home, ".docker/config.json"), []byte(`{"currentContext": "rootless"}`), 0o600)
	for _, tt := range []struct {
		env  []string
		want bool
	}{
		{[]string{"DOCKER_HOST=unix://" + sock}, true},
		{[]string{"DOCKER_HOST=tcp://127.0.0.1:2375", "DOCKER_HOST=unix://" + sock}, true}, // the last wins
		{[]string{"DOCKER_HOST=unix://" + sock, "DOCKER_CONTEXT=rootless"}, false},
		{[]string{"DOCKER_HOST=tcp://127.0.0.1:2375"}, false},
		{[]string{"DOCKER_HOST=ssh://host"}, false},
		{[]string{"DOCKER_HOST=unix://" + filepath.Join(dir, "none.sock")}, false}, // the CLI says what is wrong
		{[]string{"DOCKER_HOST=unix://" + dir}, false},                             // not a socket
		{[]string{"HOME=" + home}, false},                                          // a context in the CLI's config
	} {
		if got := engineOf(tt.env) != nil; got != tt.want {
			t.Errorf("engineOf(%q) = %v, want %v", tt.env, got, tt.want)
		}
	}
}

// A fake engine: its errors name the socket, the request and the
// engine's message; a missing image is "" as with the CLI.
func TestEngineAnswers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.RequestURI())
		switch {
		case strings.HasPrefix(r.URL.Path, "/containers/json"):
			w.Write([]byte(`[{"Id":"c1","Image":"redis:7","State":"running","Status":"Up 3 seconds (healthy)",
				"Labels":{"com.docker.compose.service":"cache","com.docker.compose.config-hash":"h1"}},
				{"Id":"x1","Image":"redis:7","State":"exited","Status":"Exited (0)","Labels":{"com.docker.compose.service":"cache","com.docker.compose.oneoff":"True"}}]`))
		case r.URL.Path == "/images/library/redis:7/json":
			w.Write([]byte(`{"Id":"sha256:abc"}`))
		case r.URL.Path == "/images/broken:1/json":
			w.WriteHeader(500)
			w.Write([]byte(`{"message":"disk on fire"}`))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"message":"No such image"}`))
		}
	})}
	go srv.Serve(l)
	defer srv.Close()
	c := &Client{Env: []string{"DOCKER_HOST=unix://" + sock}}
	st, err := c.Status(context.Background(), "ck")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Service{Name: "cache", Container: "c1", State: "running", Health: "healthy", ConfigHash: "h1", Image: "redis:7"}); len(st) != 1 || st["cache"] != want {
		t.Errorf("Status = %v, want only %v (the one-off left out)", st, want)
	}
	if want := `/containers/json?all=1&filters=%7B%22label%22%3A%5B%22com.docker.compose.project%3Dck%22%5D%7D`; paths[0] != want {
		t.Errorf("asked %s, want %s", paths[0], want)
	}
	ids, err := c.ImageIDs(context.Background(), []string{"library/redis:7", "nope:1"})
	if err != nil || ids["library/redis:7"] != "sha256:abc" || ids["nope:1"] != "" {
		t.Errorf("ImageIDs = %v, %v; want sha256:abc and \"\" for the missing image", ids, err)
	}
	_, err = c.ImageIDs(context.Background(), []string{"broken:1"})
	if err == nil || !strings.Contains(err.Error(), "broken:1") || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), sock) {
		t.Errorf("err = %v, want one naming the image, the socket and the engine's message", err)
	}
	if _, err := c.ImageIDs(context.Background(), []string{"a?b"}); err == nil || errors.Is(err, errNoImage) {
		t.Errorf("a reference with '?': %v, want a refusal", err)
	}
}
