//! Sample history for the graphs and the durable store of generations and breaches.
