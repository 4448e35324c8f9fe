-- inventory.moon
-- A small shop inventory model: plain items, perishable items with an
-- expiry time, and an Inventory that can restock, sell and report.

import concat, sort from table
import format from string

class Item
	@next_id: 1

	new: (@name, @price=0, @quantity=0, @category="misc") =>
		@id = @@next_id
		@@next_id += 1

	total_value: => @price * @quantity

	is_available: (amount=1) => @quantity >= amount

	describe: =>
		format "%-20s %6.2f x %3d", @name, @price, @quantity


class PerishableItem extends Item
	new: (name, price, quantity, @expires_on) =>
		super name, price, quantity, "fresh"

	is_expired: (now=os.time!) => now > @expires_on

	describe: =>
		base = super!
		if @is_expired!
			base .. "  (EXPIRED)"
		else
			base


class Inventory
	new: (opts={}) =>
		@items = {}
		@low_stock_threshold = opts.low_stock or 5
		@currency = opts.currency or "€"
		@log = {}

	record: (action, name, ...) =>
		extra = [tostring(v) for v in *{...}]
		entry = "#{action}: #{name}"
		entry ..= " [#{concat extra, ", "}]" if #extra > 0
		@log[#@log + 1] = entry

	add: (item) =>
		@items[item.name] = item
		@record "added", item.name
		item

	restock: (name, amount) =>
		item = @items[name]
		unless item
			return nil, "unknown item '#{name}'"
		item.quantity += amount
		@record "restock", name, amount
		item.quantity

	sell: (name, amount=1) =>
		item = @items[name]
		return nil, "unknown item '#{name}'" unless item
		unless item\is_available amount
			return nil, "only #{item.quantity} left of #{name}"
		item.quantity -= amount
		@record "sale", name, amount, item.price * amount
		item.price * amount

	low_stock: =>
		[item for _, item in pairs @items when item.quantity < @low_stock_threshold]

	by_category: =>
		counts = {}
		for _, item in pairs @items
			counts[item.category] = (counts[item.category] or 0) + item.quantity
		counts

	-- Items with a real price only, keyed by name
	price_list: =>
		{name, item.price for name, item in pairs @items when item.price > 0}

	total_value: =>
		sum = 0
		for _, item in pairs @items
			sum += item\total_value!
		sum

	category_label: (category) =>
		switch category
			when "fresh"
				"Fresh produce"
			when "bakery", "pastry"
				"Bakery & pâtisserie"
			when "misc"
				"Miscellaneous"
			else
				category\upper!

	report: =>
		header = [[
Inventory report
================
]]
		names = [name for name in pairs @items]
		sort names
		lines = [@items[name]\describe! for name in *names]
		totals = ["\t#{@category_label cat}: #{n}" for cat, n in pairs @by_category!]
		value = format "%s%.2f", @currency, @total_value!
		header .. concat(lines, "\n") .. "\n\nTotals:\n" .. concat(totals, "\n") .. "\nValue: #{value}\n"


sample_inventory = ->
	with Inventory currency: "€", low_stock: 3
		\add Item "Café en grains", 12.5, 40, "pantry"
		\add Item "Thé vert (緑茶)", 8.25, 2, "pantry"
		\add PerishableItem "Crème fraîche", 2.9, 10, os.time! + 86400
		\add Item "Croissant", 1.2, 24, "bakery"
		\sell "Croissant", 4

{ :Item, :PerishableItem, :Inventory, :sample_inventory }
