package worker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// maskInPieces feeds input to a masker in pieces of the given sizes (the
// rest in one piece) and returns what it emitted.
func maskInPieces(values []string, input string, sizes ...int) string {
	var out bytes.Buffer
	m := newMasker(values, func(b []byte) { out.Write(b) })
	for _, n := range sizes {
		n = min(n, len(input))
		m.write([]byte(input[:n]))
		input = input[n:]
	}
	m.write([]byte(input))
	m.flush()
	return out.String()
}

func TestMaskerReplacesSecretValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		values []string
		input  string
		want   string
	}{
		{"one value", []string{"hunter2"}, "pw=hunter2\n", "pw=***\n"},
		{"repeated", []string{"ab"}, "abab-ab", "******-***"},
		{"several values", []string{"tok1", "key22"}, "tok1 key22 tok", "*** *** tok"},
		{"longest wins", []string{"abc", "abcdef"}, "xabcdefx abcx", "x***x ***x"},
		{"overlapping, leftmost wins", []string{"abc", "bcd"}, "abcd bcd", "***d ***"},
		{"prefix at the end stays", []string{"secret"}, "a secre", "a secre"},
		{"empty value ignored", []string{"", "s3"}, "as3b", "a***b"},
		{"only empty values", []string{""}, "plain", "plain"},
		{"no values", nil, "plain", "plain"},
		{"value repeats its own prefix", []string{"aab"}, "aaab", "a***"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := maskInPieces(tc.values, tc.input); got != tc.want {
				t.Errorf("whole: got %q, want %q", got, tc.want)
			}
			// Every split into two and three pieces gives the same.
			for i := 0; i <= len(tc.input); i++ {
				if got := maskInPieces(tc.values, tc.input, i); got != tc.want {
					t.Errorf("split at %d: got %q, want %q", i, got, tc.want)
				}
				for j := 0; i+j <= len(tc.input); j++ {
					if got := maskInPieces(tc.values, tc.input, i, j); got != tc.want {
						t.Errorf("split at %d, %d: got %q, want %q", i, i+j, got, tc.want)
					}
				}
			}
		})
	}
}

// A value straddling single-byte writes is masked, and nothing more than
// the longest value less one byte is ever held back.
func TestMaskerHoldsBackLittle(t *testing.T) {
	t.Parallel()
	values := []string{"s3cr3t-value", "tok"}
	var out bytes.Buffer
	m := newMasker(values, func(b []byte) { out.Write(b) })
	input := "before s3cr3t-value middle s3cr3t-valu tok after"
	for i := range len(input) {
		m.write([]byte{input[i]})
		if len(m.held) > len("s3cr3t-value")-1 {
			t.Fatalf("after %d bytes %d are held back", i+1, len(m.held))
		}
		if got := out.Len() + len(m.held); got < i+1-len(values[0])*2 {
			t.Fatalf("after %d bytes only %d emitted or held", i+1, got)
		}
	}
	m.flush()
	want := "before *** middle s3cr3t-valu *** after"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// The spool masks what the step writes, flushing the held tail on close,
// and its limit counts masked bytes.
func TestSpoolMasksSecrets(t *testing.T) {
	t.Parallel()
	sp, err := newSpool(t.TempDir()+"/1.log", 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sp.maskSecrets([]string{"topsecret"})
	for _, p := range []string{"a top", "sec", "ret b top", "secre"} {
		sp.Write([]byte(p))
	}
	sp.close()
	size, _ := sp.state()
	buf := make([]byte, size)
	if _, err := sp.readAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := string(buf), "a *** b topsecre"; got != want {
		t.Errorf("spool holds %q, want %q", got, want)
	}
	if strings.Contains(string(buf), "topsecret") {
		t.Error("the secret reached the spool")
	}
}
