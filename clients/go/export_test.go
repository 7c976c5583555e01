package authd

import "time"

// WatchResumedWith is the cursor each of c's watch streams was opened with.
func WatchResumedWith(c *Client) []string {
	c.status.mu.Lock()
	defer c.status.mu.Unlock()
	return append([]string(nil), c.status.resumed...)
}

// WatchCursor is the last cursor c's watch took.
func WatchCursor(c *Client) string {
	c.status.mu.Lock()
	defer c.status.mu.Unlock()
	return c.status.cursor
}

// SetRefusedRetry sets how often a refused watcher asks again.
func SetRefusedRetry(d time.Duration) { refusedRetry = d }
