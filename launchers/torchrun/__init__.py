"""Runs on several processes through torchrun: parent.py starts them, child.py is each rank."""
