package runner

import (
	"sync"

	"github.com/omniq/omniq/jetstream"
)

// maxRecent bounds recentRecords; when full it is emptied.
const maxRecent = 10_000

// recentRecords keeps the retrying records this runner wrote, so the claim
// of the task's next attempt (usually here: a short retry is a delayed
// redelivery of the message this runner holds) can compare-and-swap from it
// without reading the record first, a round trip per retry. It is only a
// hint: a record that moved on since fails the swap and the claim reads it,
// and a claim that would do anything but run re-reads before deciding.
type recentRecords struct {
	mu   sync.Mutex
	recs map[string]jetstream.Record
}

// put remembers rec as the latest record of its task.
func (c *recentRecords) put(rec jetstream.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recs == nil || len(c.recs) >= maxRecent {
		// Entries of tasks retried elsewhere are never taken: forget all
		// rather than track ages. It costs a read per retry, once.
		c.recs = make(map[string]jetstream.Record)
	}
	c.recs[rec.Task.ID] = rec
}

// take returns and forgets the remembered record of task id.
func (c *recentRecords) take(id string) (jetstream.Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.recs[id]
	if ok {
		delete(c.recs, id)
	}
	return rec, ok
}
