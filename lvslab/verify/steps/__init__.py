"""The verification steps by family; lvslab.verify.registry names them."""
