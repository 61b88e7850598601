-- Drives Neovim headless as a real LSP client of robustd (EditorTests): opens an utterance
-- file, waits for diagnostics, asks for hover, edits a line, waits for the new diagnostics,
-- and writes what it saw as JSON to $OUT_FILE.
vim.cmd('filetype on')
package.path = os.getenv('REPO') .. '/clients/nvim/?.lua;' .. package.path
require('robustd').setup({ cmd = vim.fn.json_decode(os.getenv('ROBUSTD_CMD')) })
vim.cmd('edit ' .. os.getenv('UTTER_FILE'))
local result = { filetype = vim.bo.filetype }
result.gotFirst = vim.wait(30000, function() return #vim.diagnostic.get(0) > 0 end, 50)
local function simple(ds)
  local out = {}
  for _, d in ipairs(ds) do table.insert(out, { lnum = d.lnum, col = d.col, severity = d.severity, message = d.message }) end
  return out
end
result.first = simple(vim.diagnostic.get(0))
local params = { textDocument = { uri = vim.uri_from_bufnr(0) }, position = { line = 0, character = 1 } }
local hover = vim.lsp.buf_request_sync(0, 'textDocument/hover', params, 10000) or {}
for _, r in pairs(hover) do if r.result then result.hover = r.result.contents.value end end
local before = #vim.diagnostic.get(0)
-- An incremental edit: line 3 becomes an utterance that expects an intent it cannot be.
vim.api.nvim_buf_set_lines(0, 3, 4, false, { 'a b c  # expect: card_late' })
result.gotSecond = vim.wait(30000, function()
  for _, d in ipairs(vim.diagnostic.get(0)) do
    if d.lnum == 3 and d.message:find('expected card_late', 1, true) then return true end
  end
  return false
end, 50)
result.second = simple(vim.diagnostic.get(0))
result.before = before
vim.fn.writefile({ vim.fn.json_encode(result) }, os.getenv('OUT_FILE'))
vim.cmd('qa!')
