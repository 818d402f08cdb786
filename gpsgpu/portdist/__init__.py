"""port2dist: semantic distances between TCP ports, learned from darknet scan sequences.

The method of Evrard et al. (IM 2019, ``PORT2DIST.md``): the TCP SYNs a darknet receives are
grouped into per-source port sequences; full vertical and horizontal scans are set aside; the
transitions between consecutive ports of the remaining, finely tailored scans form a weighted port
graph whose rescaled, inverted weights are edge lengths; the distance between two ports is their
shortest-path distance. Modules, one per stage:

- :mod:`~gpsgpu.portdist.columns`: the probes table and the tables derived from it;
- :mod:`~gpsgpu.portdist.simulate`: a simulated /20 telescope with labelled scanner campaigns;
- :mod:`~gpsgpu.portdist.sequences`: per-source sequences, scan classification, transition counts;
- :mod:`~gpsgpu.portdist.graph`: window sums, rescale + invert, the port graph (CSR);
- :mod:`~gpsgpu.portdist.apsp`: all-pairs shortest paths in row blocks, kept as top-k neighbours;
- :mod:`~gpsgpu.portdist.colocation`: the same distances from a GPS model's P(port a | port b);
- :mod:`~gpsgpu.portdist.replay`: predictive scan blocking replayed in time order;
- :mod:`~gpsgpu.portdist.peers`: rival metrics (numeric, IANA ranges, Word2Vec) and scores.
"""

from __future__ import annotations
