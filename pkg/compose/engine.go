package compose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// engine reads containers and images from the Docker Engine API on its
// unix socket: what Status and ImageIDs would otherwise start the docker
// CLI for (a Go program of ~40 MB, each poll, once per image).
type engine struct {
	sock string
	http *http.Client
}

// engineTimeout bounds one request to the engine (a list or an inspect).
const engineTimeout = 30 * time.Second

// engineOf is the engine the docker CLI would talk to with env, when that
// is a unix socket this host has: DOCKER_HOST unix://PATH, or unset with
// /var/run/docker.sock. It is nil when the CLI decides otherwise or knows
// more (DOCKER_CONTEXT, a current context in the CLI's config, a tcp or
// ssh DOCKER_HOST): then the CLI is asked.
func engineOf(env []string) *engine {
	get := func(k string) string {
		v := ""
		for _, kv := range env {
			if name, val, ok := strings.Cut(kv, "="); ok && name == k {
				v = val // the last one wins, as in exec
			}
		}
		return v
	}
	if get("DOCKER_CONTEXT") != "" {
		return nil
	}
	sock := "/var/run/docker.sock"
	if h := get("DOCKER_HOST"); h != "" {
		p, ok := strings.CutPrefix(h, "unix://")
		if !ok || !filepath.IsAbs(p) {
			return nil
		}
		sock = p
	} else if currentContext(get("DOCKER_CONFIG"), get("HOME")) {
		return nil
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil
	}
	return &engine{sock: sock, http: &http.Client{Timeout: engineTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// currentContext reports whether the docker CLI's config names a context
// other than the default (the CLI would not use the default socket).
func currentContext(configDir, home string) bool {
	if configDir == "" {
		if home == "" {
			return false
		}
		configDir = filepath.Join(home, ".docker")
	}
	data, err := os.ReadFile(filepath.Join(configDir, "config.json"))
	if err != nil {
		return false
	}
	var cfg struct {
		CurrentContext string `json:"currentContext"`
	}
	return json.Unmarshal(data, &cfg) == nil && cfg.CurrentContext != "" && cfg.CurrentContext != "default"
}

// errNoImage is the engine's 404 for an image.
var errNoImage = errors.New("no such image")

// get decodes the JSON answer to GET path into v; a 404 is errNoImage's
// caller's to name.
func (e *engine) get(ctx context.Context, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("Docker Engine API at %s: %w", e.sock, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCapture+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("Docker Engine API at %s: GET %s: %w", e.sock, path, err)
	}
	if len(body) > maxCapture {
		return resp.StatusCode, fmt.Errorf("Docker Engine API at %s: GET %s: answer over %d bytes", e.sock, path, maxCapture)
	}
	if resp.StatusCode != http.StatusOK {
		var msg struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &msg)
		return resp.StatusCode, fmt.Errorf("Docker Engine API at %s: GET %s: %s: %s", e.sock, path, resp.Status, firstLine(msg.Message))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("Docker Engine API at %s: GET %s: %w", e.sock, path, err)
	}
	return resp.StatusCode, nil
}

// containers lists project's containers, running or not, as `docker ps -a
// --no-trunc --filter label=com.docker.compose.project=project` does.
func (e *engine) containers(ctx context.Context, project string) ([]psRow, error) {
	filters, _ := json.Marshal(map[string][]string{"label": {"com.docker.compose.project=" + project}})
	var list []struct {
		ID     string            `json:"Id"`
		Image  string            `json:"Image"`
		State  string            `json:"State"`
		Status string            `json:"Status"`
		Labels map[string]string `json:"Labels"`
	}
	if _, err := e.get(ctx, "/containers/json?all=1&filters="+url.QueryEscape(string(filters)), &list); err != nil {
		return nil, err
	}
	rows := make([]psRow, 0, len(list))
	for _, c := range list {
		rows = append(rows, psRow{service: c.Labels["com.docker.compose.service"], id: c.ID, state: c.State, status: c.Status,
			hash: c.Labels["com.docker.compose.config-hash"], oneoff: c.Labels["com.docker.compose.oneoff"], image: c.Image})
	}
	return rows, nil
}

// imageID is the ID of the local image ref, errNoImage when there is none.
func (e *engine) imageID(ctx context.Context, ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, "?#% \t\n") || strings.Contains(ref, "..") {
		return "", fmt.Errorf("image reference %q: not one the engine can be asked about", ref)
	}
	var img struct {
		ID string `json:"Id"`
	}
	code, err := e.get(ctx, "/images/"+ref+"/json", &img)
	if code == http.StatusNotFound {
		return "", errNoImage
	}
	if err != nil {
		return "", err
	}
	return img.ID, nil
}
