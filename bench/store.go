package main

import (
	"context"

	"github.com/veil-project/veil/sinks/store"
)

type pipelineStore = store.Store

// nopStore is the pass-through's store: it never receives items (nothing is sealed).
type nopStore struct{}

func (nopStore) Put(context.Context, []store.Item) error { return nil }
func (nopStore) Get(context.Context, string, [16]byte) (store.Item, error) {
	return store.Item{}, store.ErrNotFound
}
func (nopStore) Delete(context.Context, string, [16]byte) error { return nil }
func (nopStore) DeleteApp(context.Context, string) (int, error) { return 0, nil }
func (nopStore) Close(context.Context) error                    { return nil }
