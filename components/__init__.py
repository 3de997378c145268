"""One ComponentResource per concept of the lab; lab.py composes them."""
