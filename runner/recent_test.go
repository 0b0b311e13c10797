package runner

import (
	"fmt"
	"testing"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

func TestRecentRecords(t *testing.T) {
	var c recentRecords
	if _, ok := c.take("a"); ok {
		t.Fatal("an empty cache returned a record")
	}
	c.put(jetstream.Record{Task: &models.Task{ID: "a"}, Revision: 1})
	c.put(jetstream.Record{Task: &models.Task{ID: "a"}, Revision: 2})
	if rec, ok := c.take("a"); !ok || rec.Revision != 2 {
		t.Fatalf("take = %+v %v, want the latest put", rec, ok)
	}
	if _, ok := c.take("a"); ok {
		t.Fatal("a record was taken twice")
	}
	for i := 0; i < maxRecent+1; i++ {
		c.put(jetstream.Record{Task: &models.Task{ID: fmt.Sprint(i)}, Revision: uint64(i)})
	}
	if n := len(c.recs); n > maxRecent {
		t.Fatalf("%d records kept, over the bound %d", n, maxRecent)
	}
	if rec, ok := c.take(fmt.Sprint(maxRecent)); !ok || rec.Revision != maxRecent {
		t.Fatal("the record put after emptying the full cache is missing")
	}
}
