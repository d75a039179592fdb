"""The op sets of TF Serving releases (`tf-<major>.<minor>.ops`) and the script that lists them (make_op_list.py)."""
