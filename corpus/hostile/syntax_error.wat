(module (func (i32.add)))x
