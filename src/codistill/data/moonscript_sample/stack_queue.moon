-- stack_queue.moon
-- Linear containers: a LIFO stack and a FIFO queue that share a small
-- base class. The base class keeps a running count of instances in a
-- class member so callers can see how many containers were created.

import insert, remove, concat from table

class Container
	@created: 0

	new: (items={}) =>
		@items = {}
		@size = 0
		@@created += 1
		for item in *items
			@push_raw item

	push_raw: (item) =>
		@size += 1
		@items[@size] = item

	is_empty: => @size == 0

	clear: =>
		@items = {}
		@size = 0
		@

	to_list: => [item for item in *@items]

	__tostring: =>
		parts = [tostring(item) for item in *@items]
		"#{@@__name}<#{concat parts, ", "}>"


class Stack extends Container
	new: (items, @limit=math.huge) =>
		super items

	-- push accepts any number of values and pushes them left to right
	push: (...) =>
		for i = 1, select "#", ...
			value = select i, ...
			if @size >= @limit
				error "Stack overflow: limit of #{@limit} reached"
			@push_raw value
		@

	pop: =>
		return nil, "stack is empty" if @is_empty!
		value = @items[@size]
		@items[@size] = nil
		@size -= 1
		value

	peek: => @items[@size]


class Queue extends Container
	enqueue: (value) =>
		insert @items, value
		@size += 1
		@

	dequeue: =>
		if @is_empty!
			return nil, "queue is empty"
		@size -= 1
		remove @items, 1

	peek: =>
		unless @is_empty!
			return @items[1]

	-- Calls fn with each item in FIFO order, emptying the queue
	drain: (fn) =>
		count = 0
		while not @is_empty!
			fn @dequeue!
			count += 1
		count

	-- Returns a new queue holding only the items that pass the predicate
	filter: (pred) =>
		Queue [item for item in *@items when pred item]


describe_stats = ->
	stats =
		containers: Container.created
		stacks: Stack.created
		queues: Queue.created
	lines = ["  #{k}\t= #{v}" for k, v in pairs stats]
	table.sort lines
	"Container stats:\n" .. concat lines, "\n"


-- Checks that brackets in a string are balanced, a classic stack exercise
balanced = (text) ->
	pairs_of = { [")"]: "(", ["]"]: "[", ["}"]: "{" }
	stack = Stack!
	for ch in text\gmatch "."
		if ch == "(" or ch == "[" or ch == "{"
			stack\push ch
		elseif pairs_of[ch]
			return false unless stack\pop! == pairs_of[ch]
	stack\is_empty!


demo = ->
	with Stack({1, 2, 3}, 5)
		\push 4, 5
		print tostring(\pop!), tostring(\peek!)
	jobs = Queue {"build", "test", "deploy"}
	jobs\drain (job) -> print "running: #{job}"
	print balanced "call(a[1], {b})"
	print describe_stats!

{ :Container, :Stack, :Queue, :balanced, :demo, :describe_stats }
