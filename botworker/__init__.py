"""botworker"""
