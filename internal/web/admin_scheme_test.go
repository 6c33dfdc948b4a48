package web

import (
	"fmt"
	"net/http"
	"testing"
)

// The authentication scheme is matched without regard to case, as RFC
// 7235 has it; the token itself is compared exactly.
func TestAPIAdminTokenSchemeCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.AdminToken = "s3cret" })
	for _, auth := range []string{"bearer s3cret", "BEARER s3cret", "bEaReR s3cret", "Bearer  s3cret"} {
		e.expectJSON(e.do("POST", "/api/v1/builders/app/force", "", map[string]string{"Authorization": auth}),
			fmt.Sprintf("force with %q", auth), http.StatusCreated)
	}
	for _, auth := range []string{"bearer S3CRET", "bearers3cret", "bearer", "Bearer s3cret x", "Basic s3cret"} {
		e.expectJSON(e.do("POST", "/api/v1/builders/app/force", "", map[string]string{"Authorization": auth}),
			fmt.Sprintf("force with %q", auth), http.StatusUnauthorized)
	}
}
