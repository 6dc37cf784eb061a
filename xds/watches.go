package xds

import "sync"

// watchSet holds a cache's open watches. The cache's mutex guards it; the cancel that add returns
// takes that mutex.
type watchSet[W any] struct {
	open   map[uint64]W
	nextID uint64
}

// add keeps w open until the returned cancel is called. mu is held.
func (s *watchSet[W]) add(mu *sync.Mutex, w W) func() {
	if s.open == nil {
		s.open = map[uint64]W{}
	}
	s.nextID++
	id := s.nextID
	s.open[id] = w
	return func() {
		mu.Lock()
		delete(s.open, id)
		mu.Unlock()
	}
}
