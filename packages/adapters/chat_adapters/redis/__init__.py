"""Redis adapters: state shared by every server node (presence)."""
