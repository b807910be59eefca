package server

// RemovedCheckInterval is removedCheckInterval, for the tests.
const RemovedCheckInterval = removedCheckInterval
