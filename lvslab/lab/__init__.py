"""What a lab is, as tables and facts: topologies, schedulers, the VIP. Standard library only (the
verification, relayed to a bare python3, reads them too)."""
