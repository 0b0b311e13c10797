package submitcmd

import (
	"testing"

	"github.com/omniq/omniq/jetstream"
)

// A page of list says what it shows of: the total when the list read the
// whole bucket, else the least the total can be and how far it read.
func TestPageTotal(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		page jetstream.ListPage
		want string
	}{
		{jetstream.ListPage{Total: 3012, Read: 150000, Stored: 150000}, "3,012"},
		{jetstream.ListPage{Total: 0}, "0"},
		{jetstream.ListPage{Total: 312, Partial: true, Read: 4096, Stored: 150000}, "at least 312 (read the newest 4,096 of 150,000 records; --total reads them all)"},
	} {
		if got := pageTotal(tt.page); got != tt.want {
			t.Errorf("pageTotal(%+v) = %q, want %q", tt.page, got, tt.want)
		}
	}
}
