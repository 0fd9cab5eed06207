package agent_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/agent"
)

func TestMetricsExposition(t *testing.T) {
	m := agent.NewMetrics()
	m.Converges.Add(2)
	m.Rollbacks.Add(1)
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"# TYPE cohuron_agent_converges_total counter\ncohuron_agent_converges_total 2\n",
		"cohuron_agent_rollbacks_total 1\n",
		"# TYPE cohuron_agent_current_seq gauge\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
}
