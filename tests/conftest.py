import sys
from os import path as osp

# Make the package importable when pytest runs from anywhere, without installing it.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
