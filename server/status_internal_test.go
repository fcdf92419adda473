package server

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/store/memstore"
)

// Whatever text reaches the page (an archive name, a reason, a backup id)
// is rendered as text: html/template escapes it.
func TestStatusPageEscapes(t *testing.T) {
	s := New(Config{Store: memstore.New()})
	hostile := `<script>alert(1)</script>`
	s.scan.mu.Lock()
	s.scan.at = time.Now()
	s.scan.archives = map[string]scanned{hostile: {
		Summary: catalog.Summary{Archive: hostile, State: "gap", Reasons: []string{`<img src=x onerror=alert(2)>`}},
		Picture: catalog.Picture{Backups: []catalog.PictureBackup{{ID: `"><svg onload=alert(3)>`, Start: time.Now().Add(-time.Hour), Stop: time.Now()}},
			From: catalog.NullTime{Time: time.Now().Add(-2 * time.Hour)}, To: catalog.NullTime{Time: time.Now()}},
	}}
	s.scan.mu.Unlock()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body, _ := io.ReadAll(rec.Body)
	page := string(body)
	for _, bad := range []string{"<script>alert", "<img src=x", "<svg onload"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q unescaped", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the hostile archive name is not on the page as text")
	}
	if rec.Header().Get("Content-Security-Policy") == "" {
		t.Error("no Content-Security-Policy")
	}
}
