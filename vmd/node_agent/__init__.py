"""The node side: runs vmadm locally or over SSH, watches the node, reports to the daemon."""
